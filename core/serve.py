"""``python -m core serve RUN``: a run's model (or a derived run's) behind an HTTP API, FastAPI on uvicorn.

The model is loaded once, through the same :func:`core.evaluate.run_predictor` as every other caller
(the run's threshold and max length). ``POST /predict`` takes ``{"texts": [...]}`` (and ``"pairs"`` for a
pair task; for NER, texts are split into words at whitespace) and answers one prediction per text;
``GET /health`` says what is loaded; ``/docs`` is FastAPI's OpenAPI page.

Requests that arrive together are batched: each request's texts go into one queue, and a single
background task takes whatever is waiting (up to :data:`BATCH_TEXTS` texts) and predicts it in one call
on a worker thread — one model call at a time, so the Predictor is never used by two threads, and a
burst of one-text requests costs one batched forward pass instead of one each.

Anyone who can reach the port can predict, so :func:`serve` binds the loopback address by default and
refuses another address unless ``TUNEBOARD_SERVE_TOKEN`` is set; with a token, ``/predict`` needs
``Authorization: Bearer <token>`` (``/health`` and the docs stay open).

Bad requests get a 4xx with a message saying what is wrong and how to fix it (FastAPI's own 422 for
a body that is not ``{"texts": [strings]}``, ours for an empty list, too many texts, a text too long,
pairs that don't match), never a 500 and never a traceback.
"""

# No ``from __future__ import annotations``: FastAPI reads the request model from the endpoint's annotation,
# which must be the class itself (it is defined inside create_app), not a string.
import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_TEXTS = 256  # texts in one request (TUNEBOARD_SERVE_MAX_TEXTS)
MAX_TEXT_CHARS = 20_000  # characters in one text (TUNEBOARD_SERVE_MAX_TEXT_CHARS); the model reads max_length tokens of it
BATCH_TEXTS = 64  # texts predicted in one model call


@dataclass(frozen=True)
class ServeLimits:
    max_texts: int = MAX_TEXTS
    max_text_chars: int = MAX_TEXT_CHARS

    @classmethod
    def from_env(cls) -> "ServeLimits":
        return cls(int(os.environ.get("TUNEBOARD_SERVE_MAX_TEXTS", MAX_TEXTS)),
                   int(os.environ.get("TUNEBOARD_SERVE_MAX_TEXT_CHARS", MAX_TEXT_CHARS)))


class BadRequest(ValueError):
    """A request this API refuses; the message says what is wrong and how to fix it."""


def check_request(texts: list[str], pairs: list[str] | None, task: str, limits: ServeLimits) -> None:
    if not texts:
        raise BadRequest('"texts" is empty: send at least one text, e.g. {"texts": ["a review to classify"]}.')
    if len(texts) > limits.max_texts:
        raise BadRequest(f'"texts" has {len(texts)} texts; the limit is {limits.max_texts} per request: '
                         "split them over several requests.")
    for i, text in enumerate([*texts, *(pairs or [])]):
        if len(text) > limits.max_text_chars:
            where = f"texts[{i}]" if i < len(texts) else f"pairs[{i - len(texts)}]"
            raise BadRequest(f"{where} has {len(text):,} characters; the limit is {limits.max_text_chars:,}: "
                             "shorten it (the model reads only its first tokens anyway).")
    if task == "pair" and pairs is None:
        raise BadRequest('this model classifies text pairs: send "pairs" beside "texts", one second text per text.')
    if pairs is not None and len(pairs) != len(texts):
        raise BadRequest(f'"pairs" has {len(pairs)} texts and "texts" {len(texts)}: send one pair per text.')
    if pairs is not None and task != "pair":
        raise BadRequest(f'this model is a {task} model and takes no "pairs": send "texts" only.')


def answers(predictor: Any, texts: list[str], pairs: list[str] | None) -> list[dict[str, Any]]:
    """One JSON-ready prediction per text: label and probabilities, labels, a value, or tagged words."""
    task = predictor.task
    if task == "token":
        words = [text.split() for text in texts]
        tags = predictor.predict_tokens(words) if any(words) else [[] for _ in words]
        return [{"tokens": w, "tags": t} for w, t in zip(words, tags, strict=True)]
    frame = predictor.predict_texts(texts, pairs)
    out = []
    for _, row in frame.iterrows():
        if task == "regression":
            out.append({"value": float(row["predicted"])})
            continue
        probabilities = {name: float(row[f"p_{name}"]) for name in predictor.names}
        if task == "multi_label":
            out.append({"labels": [x for x in str(row["predicted"]).split("|") if x], "probabilities": probabilities})
        else:
            out.append({"label": row["predicted"], "confidence": float(row["confidence"]), "probabilities": probabilities})
    return out


class Batcher:
    """Requests' texts in one queue, predicted together by one task, one model call at a time."""

    def __init__(self, predictor: Any, batch_texts: int = BATCH_TEXTS):
        self.predictor = predictor
        self.batch_texts = batch_texts
        self.queue: asyncio.Queue[tuple[list[str], list[str] | None, asyncio.Future]] = asyncio.Queue()
        self.calls = 0  # model calls made (a test reads it to see that requests were batched)

    async def predict(self, texts: list[str], pairs: list[str] | None) -> list[dict[str, Any]]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, pairs, future))
        return await future

    async def run(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            count = len(waiting[0][0])
            # Same-shaped requests only (with or without pairs), up to batch_texts texts.
            while not self.queue.empty() and count + len(self.queue._queue[0][0]) <= self.batch_texts \
                    and (self.queue._queue[0][1] is None) == (waiting[0][1] is None):
                item = self.queue.get_nowait()
                waiting.append(item)
                count += len(item[0])
            texts = [t for item in waiting for t in item[0]]
            pairs = [p for item in waiting for p in item[1]] if waiting[0][1] is not None else None
            try:
                self.calls += 1
                results = await asyncio.to_thread(answers, self.predictor, texts, pairs)
            except Exception as exc:  # noqa: BLE001 - the model failed: every waiting request hears why
                for _, _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for item_texts, _, future in waiting:
                if not future.done():
                    future.set_result(results[start:start + len(item_texts)])
                start += len(item_texts)


def create_app(run_dir: str | Path, limits: ServeLimits | None = None, token: str | None = None) -> Any:
    """The FastAPI app serving ``run_dir``'s model (loaded now, once); ``token``: the bearer token ``/predict`` needs."""
    import hmac

    from fastapi import FastAPI, Header, HTTPException
    from pydantic import BaseModel, Field

    from core.evaluate import run_predictor

    run_dir = Path(run_dir)
    limits = limits or ServeLimits.from_env()
    predictor = run_predictor(run_dir)
    batcher = Batcher(predictor)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202 - FastAPI's lifespan protocol
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title=f"Tuneboard: {run_dir.name}", lifespan=lifespan,
                  description=f"Predictions of run {run_dir.name} ({predictor.task}; labels: {', '.join(predictor.names)}).")
    app.state.batcher = batcher

    class PredictRequest(BaseModel):
        texts: list[str] = Field(description="The texts to predict (for NER: words separated by spaces).")
        pairs: list[str] | None = Field(None, description="Pair tasks: the second text of each pair.")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "run": run_dir.name, **predictor.describe(),
                "limits": {"max_texts": limits.max_texts, "max_text_chars": limits.max_text_chars}}

    @app.post("/predict")
    async def predict(request: PredictRequest, authorization: str | None = Header(None)) -> dict[str, Any]:
        if token and not hmac.compare_digest(authorization or "", f"Bearer {token}"):
            raise HTTPException(status_code=401, detail="this API needs the header 'Authorization: Bearer <token>' with "
                                                        "the token it was started with (TUNEBOARD_SERVE_TOKEN).")
        try:
            check_request(request.texts, request.pairs, predictor.task, limits)
        except BadRequest as exc:
            raise HTTPException(status_code=413 if "limit" in str(exc) else 422, detail=str(exc)) from None
        return {"run": run_dir.name, "predictions": await batcher.predict(request.texts, request.pairs)}

    return app


class ServeRefused(ValueError):
    """The API would be reachable by anyone: the message says how to start it safely."""


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    from core.serving import is_loopback

    token = os.environ.get("TUNEBOARD_SERVE_TOKEN") or None
    if not is_loopback(host) and not token:
        raise ServeRefused(f"serving on {host} would let anyone who reaches port {port} use the model: set "
                           "TUNEBOARD_SERVE_TOKEN to a secret (clients send 'Authorization: Bearer <it>'), or serve "
                           "on 127.0.0.1 behind your own proxy.")
    uvicorn.run(create_app(run_dir, token=token), host=host, port=port, log_level="info")
