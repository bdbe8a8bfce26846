"""Reading image tags from an OCI registry (the Distribution API), as ``docker pull`` would.

``tags`` follows ``/v2/<name>/tags/list`` page by page through its ``Link``
headers; ``digest`` asks for a tag's manifest with ``HEAD``. Authentication
follows the registry's ``WWW-Authenticate`` challenge: none, ``Basic`` with
the configured credentials, or ``Bearer``, the token flow Harbor, GitLab and
Docker Hub use (get a token from the realm for the scope, with the
credentials when there are some, then send it).
"""

import base64
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, Field

from shared.errors import FabuError, TransientError
from shared.outside import egress

PAGE_SIZE = 100
CACHE_S = 10.0
# Digests kept at most (then forgotten at once: each is asked again at its next use).
DIGESTS_KEPT = 4096
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class RegistryAccess(BaseModel):
    """How to reach one registry host: ``FABU_REGISTRIES`` maps hosts to these."""

    url: str = ""  # default: https://<host>
    username: str = ""
    password: str = Field(default="", repr=False)


class RegistryError(FabuError):
    status = 502


@dataclass(frozen=True)
class Repository:
    host: str
    name: str

    @classmethod
    def parse(cls, image_repository: str) -> "Repository":
        host, _, name = image_repository.partition("/")
        if not name or ("." not in host and ":" not in host and host != "localhost"):
            # Docker's rule: the first part is a host only when it looks like one.
            return cls("registry-1.docker.io", image_repository)
        return cls(host, name)

    def __str__(self) -> str:
        return f"{self.host}/{self.name}"


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Registries:
    """One HTTP client for every registry, with its credentials, tokens and a short tag cache."""

    def __init__(
        self, access: dict[str, RegistryAccess], deny: egress.Deny = egress.NOTHING
    ) -> None:
        self._access = access
        # Registries send their token realm, next pages and redirects: all guarded.
        self._http = egress.client(deny, timeout=15, max_bytes=16 << 20, follow_redirects=True)
        self._tokens: dict[tuple[str, str], str] = {}
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._digests: dict[str, tuple[float, str]] = {}

    async def close(self) -> None:
        await self._http.aclose()

    def _base(self, repo: Repository) -> str:
        access = self._access.get(repo.host)
        return (access.url if access and access.url else f"https://{repo.host}").rstrip("/")

    def _basic(self, repo: Repository) -> str | None:
        access = self._access.get(repo.host)
        if not access or not access.username:
            return None
        pair = f"{access.username}:{access.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    async def _get(self, repo: Repository, method: str, url: str, **headers: str) -> httpx.Response:
        """A request with whatever authorization the registry asks for."""
        scope = f"repository:{repo.name}:pull"
        token = self._tokens.get((repo.host, scope))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._http.request(method, url, headers=headers)
            if response.status_code != 401:
                return response
            scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
            if scheme == "basic":
                basic = self._basic(repo)
                if basic is None:
                    raise RegistryError(f"{repo.host} wants credentials; none are configured")
                headers["Authorization"] = basic
            elif scheme == "bearer":
                token = await self._token(repo, params, scope)
                headers["Authorization"] = f"Bearer {token}"
            else:
                raise RegistryError(f"{repo.host} refused the request (401)")
            response = await self._http.request(method, url, headers=headers)
        except httpx.TransportError as exc:
            raise TransientError(f"registry {repo.host} unreachable: {exc}") from exc
        if response.status_code == 401:
            raise RegistryError(f"{repo.host} refused the configured credentials for {repo.name}")
        return response

    async def _token(self, repo: Repository, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{repo.host} asked for a bearer token without a realm")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        basic = self._basic(repo)
        answer = await self._http.get(
            realm, params=query, headers={"Authorization": basic} if basic else {}
        )
        if answer.status_code != 200:
            raise RegistryError(
                f"the token service of {repo.host} answered {answer.status_code} for {repo.name}"
            )
        body: dict[str, Any] = answer.json()
        token = str(body.get("token") or body.get("access_token") or "")
        if not token:
            raise RegistryError(f"the token service of {repo.host} sent no token")
        self._tokens[(repo.host, scope)] = token
        return token

    async def tags(self, image_repository: str, *, fresh: bool = False) -> list[str]:
        """Every tag of the repository, following ``Link`` pages; cached for CACHE_S."""
        repo = Repository.parse(image_repository)
        cached = self._cache.get(str(repo))
        if cached and not fresh and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        base = self._base(repo)
        url: str | None = f"{base}/v2/{repo.name}/tags/list?n={PAGE_SIZE}"
        tags: list[str] = []
        while url:
            response = await self._get(repo, "GET", url)
            if response.status_code == 404:
                break  # no such repository yet: no tags
            if response.status_code != 200:
                raise RegistryError(
                    f"{repo} tags: the registry answered {response.status_code}: "
                    f"{response.text[:300]}"
                )
            tags += response.json().get("tags") or []
            url = _next(response, base)
        self._cache[str(repo)] = (time.monotonic(), tags)
        return tags

    async def digest(self, image_repository: str, tag: str, *, fresh: bool = False) -> str | None:
        """The manifest digest of ``tag``, None when the registry does not have it. A digest
        found is kept for CACHE_S (releases of one image to several environments ask once);
        ``fresh`` asks the registry whatever (registering a tag just pushed again)."""
        repo = Repository.parse(image_repository)
        key = f"{repo}:{tag}"
        kept = self._digests.get(key)
        if kept and not fresh and time.monotonic() - kept[0] < CACHE_S:
            return kept[1]
        url = f"{self._base(repo)}/v2/{repo.name}/manifests/{tag}"
        response = await self._get(repo, "HEAD", url, Accept=MANIFEST_TYPES)
        if response.status_code == 404:
            self._digests.pop(key, None)
            return None
        if response.status_code != 200:
            raise RegistryError(f"{repo}:{tag}: the registry answered {response.status_code}")
        digest = str(response.headers.get("Docker-Content-Digest", ""))
        if len(self._digests) >= DIGESTS_KEPT:
            self._digests.clear()
        self._digests[key] = (time.monotonic(), digest)
        return digest


def _next(response: httpx.Response, base: str) -> str | None:
    """The next page from the ``Link: <…>; rel="next"`` header, absolute."""
    link = response.headers.get("Link", "")
    found = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    if not found:
        return None
    target = found.group(1)
    return target if target.startswith("http") else f"{base}{target}"
