"""A small OpenID Connect provider for the single sign-on tests, on localhost in a thread.

It does what Google, Entra or Keycloak do for the authorization-code flow, and no more: discovery
(``/.well-known/openid-configuration``), ``/authorize`` (it signs in ``identity`` at once, as a
provider with a remembered session does, and redirects back with a one-time code), ``/token`` (the
code for an RS256-signed ID token with the nonce, checked against the client's secret), ``/jwks``
and ``/userinfo``. Streamlit's own st.login code (Authlib) talks to it exactly as to a real one.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route


class MockOIDC:
    def __init__(self, client_id: str = "tuneboard", client_secret: str = "mock-secret"):
        self.client_id, self.client_secret = client_id, client_secret
        self.identity: dict[str, Any] = {}  # who /authorize signs in: set by the test before each login
        self.key = RSAKey.generate_key(2048, parameters={"kid": "mock-1", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, dict[str, Any]] = {}
        self.base = ""

    def metadata(self, request: Request) -> JSONResponse:
        b = self.base
        return JSONResponse({
            "issuer": b, "authorization_endpoint": f"{b}/authorize", "token_endpoint": f"{b}/token",
            "jwks_uri": f"{b}/jwks", "userinfo_endpoint": f"{b}/userinfo", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})

    def authorize(self, request: Request) -> RedirectResponse:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return RedirectResponse(f"{q.get('redirect_uri')}?{urlencode({'error': 'unauthorized_client', 'state': q.get('state', '')})}")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": q.get("nonce"), "redirect_uri": q.get("redirect_uri"), "identity": dict(self.identity)}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}", status_code=302)

    async def token(self, request: Request) -> JSONResponse:
        form = await request.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        grant = self.codes.pop(str(form.get("code")), None)  # one use only
        if (client_id, client_secret) != (self.client_id, self.client_secret) or grant is None \
                or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {"iss": self.base, "aud": self.client_id, "iat": now, "exp": now + 600, "nonce": grant["nonce"],
                  "sub": grant["identity"].get("email", "nobody"), "email_verified": True, **grant["identity"]}
        id_token = jwt.encode({"alg": "RS256", "kid": "mock-1"}, claims, self.key)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 600,
                             "id_token": id_token, "scope": "openid email profile"})

    def jwks(self, request: Request) -> JSONResponse:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    def userinfo(self, request: Request) -> JSONResponse:
        return JSONResponse(self.identity)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.metadata), Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]), Route("/jwks", self.jwks), Route("/userinfo", self.userinfo)])


@contextlib.contextmanager
def running_provider() -> Iterator[MockOIDC]:
    """The provider on a free localhost port, for the ``with`` block."""
    provider = MockOIDC()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider.base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(provider.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)
