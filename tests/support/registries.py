"""Real registries behind authentication, for the tests: one with htpasswd (Basic), one
with token auth (Bearer) whose token service is ours.

Both are the same ``docker-registry`` the local stack runs. The token service
signs JWTs with a key whose certificate the registry trusts (``rootcertbundle``),
in the format the Distribution spec's token authentication describes: RS256,
the certificate chain in ``x5c``, ``access`` claims per repository.
"""

import base64
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import jwt
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devstack.build import REGISTRY_BINARY
from devstack.stack import free_port
from tests.support.http import serve

USER, PASSWORD = "ci-bot", "s3cret-pass"
SERVICE, ISSUER = "fabu-test-registry", "fabu-test-token-issuer"


@dataclass
class Registry:
    url: str
    host: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_registry(root: Path, auth: dict[str, Any]) -> Registry:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
                "auth": auth,
            }
        )
    )
    binary = shutil.which(REGISTRY_BINARY) or REGISTRY_BINARY
    with (root / "registry.log").open("ab") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"{url}/v2/", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"registry did not start: {config.read_text()}") from None
            time.sleep(0.05)
    return Registry(url=url, host=f"127.0.0.1:{port}", process=process)


def htpasswd_registry(root: Path) -> Registry:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").parent.mkdir(parents=True, exist_ok=True)
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    return start_registry(
        root, {"htpasswd": {"realm": "fabu-tests", "path": str(root / "htpasswd")}}
    )


class TokenService:
    """Issues registry tokens to USER:PASSWORD, for the scope asked."""

    def __init__(self, root: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        root.mkdir(parents=True, exist_ok=True)
        self.bundle = root / "token-cert.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.url = ""
        self.issued = 0
        self._runner: web.AppRunner | None = None

    def token(self, scope: str) -> str:
        kind, _, rest = scope.partition(":")
        repository, _, actions = rest.rpartition(":")
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + timedelta(minutes=5),
            "nbf": now - timedelta(seconds=30),
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": kind, "name": repository, "actions": actions.split(",")}],
        }
        der = self.cert.public_bytes(serialization.Encoding.DER)
        self.issued += 1
        return jwt.encode(
            claims, self.key, algorithm="RS256", headers={"x5c": [base64.b64encode(der).decode()]}
        )

    async def _serve(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"details": "wrong credentials"}, status=401)
        return web.json_response({"token": self.token(request.query.get("scope", ""))})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._serve)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


def token_registry(root: Path, tokens: TokenService) -> Registry:
    return start_registry(
        root,
        {
            "token": {
                "realm": f"{tokens.url}/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(tokens.bundle),
            }
        },
    )


def basic_header() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
