"""``core serve`` (issue #13): a run's model over HTTP, batched, refusing bad requests with a 4xx and a message."""

import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from core import serve
from core.evaluate import run_predictor
from tests.browser.conftest import free_port
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

LEGACY = REPO / "tests" / "fixtures" / "legacy_run"
TEXTS = ["A triumph: funny, moving and beautifully shot.", "Dull, long and badly acted.", "It is a film."]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A copy of the saved fixture run (a real 2-layer MiniLM fine-tuned on rotten_tomatoes)."""
    root = tmp_path_factory.mktemp("runs")
    source = next(p for p in LEGACY.iterdir() if p.is_dir())
    shutil.copytree(source, root / source.name)
    return root / source.name


def call(url, body=None, headers=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_answers_on_a_port_and_refuses_bad_requests_with_a_message(run_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNEBOARD_SERVE_MAX_TEXTS": "4", "TUNEBOARD_SERVE_MAX_TEXT_CHARS": "500"}
    proc = subprocess.Popen([sys.executable, "-m", "core", "--root", str(run_dir.parent), "serve", run_dir.name,
                             "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:  # until it answers or exits (a hang is ended by pytest-timeout)
            try:
                status, health = call(f"{url}/health")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
                time.sleep(0.3)
        assert status == 200 and health["run"] == run_dir.name and health["labels"] == ["fresh", "rotten"]

        status, body = call(f"{url}/predict", {"texts": TEXTS})
        assert status == 200 and len(body["predictions"]) == 3
        expected = run_predictor(run_dir).predict_texts(TEXTS)
        assert [p["label"] for p in body["predictions"]] == expected["predicted"].tolist()
        for p in body["predictions"]:
            assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
            assert p["confidence"] == pytest.approx(max(p["probabilities"].values()))

        refusals = [
            ({"texts": []}, 422, '"texts" is empty'),
            ({"texts": ["a"] * 5}, 413, "the limit is 4 per request"),
            ({"texts": ["x" * 501]}, 413, "texts[0] has 501 characters; the limit is 500"),
            ({"texts": ["a"], "pairs": ["b"]}, 422, "takes no \"pairs\""),
            ({"texts": "not a list"}, 422, "texts"),
            ({"texts": [1, 2]}, 422, "texts"),
            ({"text": ["typo in the key"]}, 422, "texts"),
            (b"{not json", 422, "JSON"),
        ]
        for request, code, words in refusals:
            status, body = call(f"{url}/predict", request)
            assert status == code, (request, body)
            detail = body["detail"] if isinstance(body["detail"], str) else json.dumps(body["detail"])
            assert words in detail, (request, body)
        status, body = call(f"{url}/predict", {"texts": ["still answering"]})
        assert status == 200  # bad requests left the server as it was
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_requests_that_arrive_together_are_predicted_in_one_call(monkeypatch):
    class Model:
        task, names = "single_label", ["a", "b"]
        calls: list[list[str]] = []

    def fake_answers(predictor, texts, pairs):
        Model.calls.append(list(texts))
        return [{"label": t} for t in texts]

    async def scenario():
        batcher = serve.Batcher(Model(), batch_texts=5)
        requests = [asyncio.create_task(batcher.predict([f"t{i}", f"u{i}"], None)) for i in range(3)]
        await asyncio.sleep(0)  # all three are queued before the batcher looks
        worker = asyncio.create_task(batcher.run())
        results = await asyncio.gather(*requests)
        worker.cancel()
        return results

    monkeypatch.setattr(serve, "answers", fake_answers)
    # a thread of its own: an earlier test in this worker process (Streamlit's AppTest) may leave a running loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        results = pool.submit(asyncio.run, scenario()).result()
    # two requests fit in a batch of 5 texts, the third waits for the next call; each gets its own answers back
    assert Model.calls == [["t0", "u0", "t1", "u1"], ["t2", "u2"]]
    assert results == [[{"label": "t0"}, {"label": "u0"}], [{"label": "t1"}, {"label": "u1"}], [{"label": "t2"}, {"label": "u2"}]]


def test_a_token_guards_predict_and_an_open_address_needs_one(run_dir, monkeypatch):
    from fastapi.testclient import TestClient

    with TestClient(serve.create_app(run_dir, token="s3cret")) as client:
        assert client.get("/health").status_code == 200
        refused = client.post("/predict", json={"texts": TEXTS})
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["detail"]
        wrong = client.post("/predict", json={"texts": TEXTS}, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        ok = client.post("/predict", json={"texts": TEXTS}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3
    monkeypatch.delenv("TUNEBOARD_SERVE_TOKEN", raising=False)
    with pytest.raises(serve.ServeRefused, match="set TUNEBOARD_SERVE_TOKEN"):
        serve.serve(run_dir, host="0.0.0.0")
