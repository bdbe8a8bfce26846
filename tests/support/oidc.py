"""GitLab as an OpenID Connect provider, owned by the tests: NOT GitLab.

Nothing real can run GitLab here. This answers the OpenID Connect calls Fabu
makes of GitLab's documented endpoints (discovery, ``/oauth/authorize``,
``/oauth/token``, ``/oauth/discovery/keys``) with RS256-signed ID tokens,
and checks what a provider checks: the client's id and secret, the redirect
URI, the PKCE verifier (S256) and the one-time code. Whoever ``signed_in``
names is taken to be logged in at GitLab already, so ``/oauth/authorize``
sends the browser straight back with a code.
"""

import base64
import hashlib
import json
import secrets
import time
import urllib.parse
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.http import serve

CLIENT_ID = "fabu-oidc-client"
CLIENT_SECRET = "oidc-client-secret-for-tests"


class FakeGitLabIdentity:
    def __init__(self) -> None:
        self.url = ""
        self.signed_in: dict[str, str] = {}
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._codes: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/oauth/authorize", self._authorize)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/oauth/discovery/keys", self._keys)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/oauth/authorize",
                "token_endpoint": f"{self.url}/oauth/token",
                "jwks_uri": f"{self.url}/oauth/discovery/keys",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
            }
        )

    async def _keys(self, _: web.Request) -> web.Response:
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        return web.json_response({"keys": [{**jwk, "kid": "test", "use": "sig", "alg": "RS256"}]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.json_response({"error": "invalid_client"}, status=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.json_response({"error": "invalid_request", "detail": "PKCE"}, status=400)
        code = secrets.token_urlsafe(16)
        self._codes[code] = {
            "redirect_uri": q["redirect_uri"],
            "challenge": q["code_challenge"],
            "nonce": q.get("nonce", ""),
            "user": dict(self.signed_in),
        }
        back = urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
        raise web.HTTPFound(f"{q['redirect_uri']}?{back}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        basic = request.headers.get("Authorization", "").removeprefix("Basic ")
        client = base64.b64decode(basic).decode() if basic else ""
        if client != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._codes.pop(str(form.get("code", "")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if challenge != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "detail": "PKCE"}, status=400)
        user = grant["user"]
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": user["nickname"],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "nonce": grant["nonce"],
            **user,
        }
        id_token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "test"})
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 7200,
                "scope": "openid profile email",
                "id_token": id_token,
            }
        )
