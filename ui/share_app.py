"""The shared dashboard (`make share`): the same Streamlit app behind a login, served as an ASGI app.

``streamlit run ui/share_app.py`` finds the ``app`` below (Streamlit 1.67 runs a script holding an
``st.App`` on uvicorn) and serves streamlit_app.py behind :class:`RequireLogin`: no page, file or
websocket is served without a valid session, so the login is not a widget a crafted request can
skip. The login form is a plain HTML page here because only an HTTP response can set the HttpOnly
session cookie; what it checks (password, lock-out, signing) is core.login.

Single sign-on: when the secrets (``.streamlit/secrets.toml``, or the file ``TUNEBOARD_SECRETS``
names) have an ``[auth]`` section, the login page also offers Streamlit's own OIDC flow (st.login:
``/auth/login`` → the provider → ``/oauth2callback``), and a request carrying Streamlit's signed
identity cookie passes when users.yaml gives that e-mail address, or one of its groups, a role.
Reading that cookie and starting the flow from a plain page use Streamlit 1.67's own helpers
(pinned in requirements.txt): the identity is checked with Streamlit's key, never trusted as sent.

It refuses to start while no one could log in, naming the command that fixes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run ui/share_app.py` puts ui/ first on the path, where ui/html.py would shadow the
# standard library's html: the repository goes there instead, as for streamlit_app.py.
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "ui"]

import html  # noqa: E402
import os  # noqa: E402
from urllib.parse import quote  # noqa: E402

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import HTTPConnection, Request  # noqa: E402
from starlette.responses import HTMLResponse, RedirectResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from core import login, serving, users  # noqa: E402
from core.access import User  # noqa: E402
from core.config import default_runs_root  # noqa: E402

os.environ[serving.SHARED_ENV] = "1"  # the pages read the mode from here (and the trainers inherit it)
HOME = Path(default_runs_root()).resolve()
SECRETS = serving.load_secrets(REPO)
SSO = "auth" in SECRETS
SSO_PATHS = {"/auth/login", "/auth/logout", "/oauth2callback"}  # Streamlit's own sign-on routes
PUBLIC = {login.LOGIN_PATH, login.LOGOUT_PATH, "/_stcore/health", "/favicon.png"} | (SSO_PATHS if SSO else set())

problem = serving.share_problem(HOME, sso=SSO)
if problem:
    sys.exit(problem)

FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in · Tuneboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#F4F5FB;color:#1E293B;display:grid;place-items:center;height:100vh;margin:0}}
form{{background:#fff;padding:2rem 2.2rem;border-radius:12px;box-shadow:0 2px 12px #0001;width:20rem}}
h1{{font-size:1.4rem;margin:0 0 1.2rem}} label{{display:block;font-size:.9rem;margin:.8rem 0 .3rem}}
input{{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #CBD5E1;border-radius:8px;font-size:1rem}}
button{{margin-top:1.3rem;width:100%;padding:.6rem;border:0;border-radius:8px;background:#4F46E5;color:#fff;font-size:1rem}}
.error{{background:#FEF2F2;color:#991B1B;padding:.6rem .8rem;border-radius:8px;font-size:.9rem}}
.note{{font-size:.8rem;color:#64748B;margin-top:1rem}}
.sso{{display:block;text-align:center;margin-top:.8rem;padding:.55rem;border:1px solid #4F46E5;border-radius:8px;
color:#4F46E5;text-decoration:none}}</style></head>
<body><form method="post" action="{action}"><h1>Tuneboard</h1>{error}
<label for="name">User name</label><input id="name" name="name" autocomplete="username" value="{name}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>{sso}
<p class="note">No account? An admin adds one: <code>python -m core users add NAME --role viewer</code></p></form></body></html>"""


def _next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never ``//host`` or a full URL)."""
    return target if target and target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _form(request: Request, error: str = "", name: str = "", status: int = 200) -> HTMLResponse:
    action = f"{login.LOGIN_PATH}?next={quote(_next(request.query_params.get('next')), safe='/')}"
    box = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    sso = ""
    if SSO:  # what st.login() does from a page: a signed, short-lived token naming the provider
        from streamlit.auth_util import encode_provider_token

        sso = f'<a class="sso" href="/auth/login?provider={quote(encode_provider_token("default"))}">Log in with single sign-on</a>'
    return HTMLResponse(FORM.format(action=html.escape(action), error=box, name=html.escape(name), sso=sso), status_code=status)


NO_ROLE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>No access · Tuneboard</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#1E293B"><h1>No access yet</h1>
<p role="alert">You are signed in as <b>{email}</b>, but this dashboard gives that account no role.</p>
<p>An admin can add you: <code>python -m core users add {email} --role viewer --sso</code>
(or give your group a role under <code>groups:</code> in users.yaml).</p><p><a href="/auth/logout">Sign out</a></p></body></html>"""


def sso_identity(connection: HTTPConnection) -> dict | None:
    """The identity in Streamlit's signed sign-on cookie, checked with Streamlit's key and its origin rule."""
    if not SSO:
        return None
    from streamlit.web.server.starlette.starlette_websocket import _get_signed_cookie_with_chunks, _parse_decoded_user_cookie

    raw = _get_signed_cookie_with_chunks(dict(connection.cookies), "_streamlit_user")
    if not raw:
        return None
    origin = connection.headers.get("origin") or f"{'https' if connection.url.scheme in ('https', 'wss') else 'http'}://{connection.url.netloc}"
    identity = _parse_decoded_user_cookie(raw, origin)
    return identity if identity.get("is_logged_in") else None


def request_user(connection: HTTPConnection) -> User | dict | None:
    """The user of a request (password session first, then single sign-on); the bare identity when it
    has no role here; None when it has neither."""
    user = login.session_user(HOME, connection.cookies.get(login.COOKIE))
    if user is not None:
        return user
    identity = sso_identity(connection)
    if identity is None:
        return None
    return users.role_for_identity(HOME, identity.get("email"), identity.get("groups")) or identity


async def login_page(request: Request) -> Response:
    if request.method == "GET":
        return _form(request)
    form = await request.form()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    client = request.client.host if request.client else None
    try:  # argon2 is slow by design: keep it off the event loop
        user = await run_in_threadpool(login.log_in, HOME, name, password, client)
    except login.LoginRefused as exc:
        return _form(request, str(exc), name, status=429 if "Too many" in str(exc) else 401)
    response = RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    response.set_cookie(login.COOKIE, login.sign_session(HOME, user), max_age=int(login.SessionPolicy().max_age_s),
                        httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(login.LOGIN_PATH, status_code=303)
    response.delete_cookie(login.COOKIE, path="/")
    return response


class RequireLogin:
    """ASGI middleware: every request but the login page and the health check needs a valid session;
    a page request without one is sent to the login, a websocket is closed before it opens."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope["path"] not in PUBLIC:
            user = await run_in_threadpool(request_user, HTTPConnection(scope))  # a page request or the app's websocket
            if isinstance(user, dict):  # signed in through the provider, with no role here
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 4403, "reason": "no role"})
                    return
                page = NO_ROLE.format(email=html.escape(str(user.get("email") or user.get("sub") or "?")))
                return await HTMLResponse(page, status_code=403)(scope, receive, send)
            if user is None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 4401, "reason": "log in first"})
                    return
                if scope["path"].startswith("/_stcore/") or scope["method"] != "GET":
                    return await Response("Log in first.", status_code=401)(scope, receive, send)
                target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
                return await RedirectResponse(f"{login.LOGIN_PATH}?next={quote(target, safe='/')}",
                                              status_code=303)(scope, receive, send)
        await self.app(scope, receive, send)


app = st.App(str(REPO / "streamlit_app.py"), secrets=SECRETS or None,
             routes=[Route(login.LOGIN_PATH, login_page, methods=["GET", "POST"]), Route(login.LOGOUT_PATH, logout)],
             middleware=[Middleware(RequireLogin)])
