"""The only module that talks to Kubernetes: server-side apply, reads and watches.

Objects stay raw dicts (JSON straight off the wire): the client's model
deserialisation costs more than the work it wraps on these paths.
"""

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client, config

from shared.cluster.objects import KubeObject
from shared.cluster.throttle import Gate
from shared.errors import PermanentError, TransientError
from shared.models.catalog import Environment

Obj = KubeObject
# A JSON answer of the API server that is not one object (a listing, discovery).
Json = dict[str, Any]
FIELD_MANAGER = "fabu"
WATCH_TIMEOUT_S = 240
# What ``Cluster.watch`` yields once a listing's objects are all out.
LISTED = "LISTED"


class ClusterError(PermanentError):
    pass


class Unserved(ClusterError):
    """The cluster does not serve a kind in an apiVersion."""


class Cluster:
    def __init__(self, api: client.ApiClient, gate: Gate) -> None:
        self._api = api
        # (apiVersion, kind) → the path segments of its collection's group, its plural, namespaced.
        self._resources: dict[tuple[str, str], tuple[tuple[str, ...], str, bool]] = {}
        # Requests this process has open to the cluster at once (watches aside), as
        # many as the API server answers in time: hundreds of releases at once must
        # not flood it until its answers time out.
        self._gate = gate

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
        request_timeout: float = 30,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=request_timeout,
            )
        except TimeoutError as exc:
            raise TransientError(
                f"cluster unreachable: no answer within {request_timeout:g}s", delay=3.0
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"cluster unreachable: {exc}", delay=3.0) from exc
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Json | None:
        async with self._gate.request() as answer:
            response = await self._call(method, path, **kwargs)
            async with response:
                text = await response.text()
            answer.pushed_back = _pushed_back(response)
        if response.status == 404 and method == "GET":
            return None
        if answer.pushed_back:
            raise _again(response, text)
        if response.status >= 400:
            raise ClusterError(_message(text))
        parsed: Json = json.loads(text)
        return parsed

    async def _object(self, method: str, path: str, **kwargs: Any) -> Obj | None:
        """One object the API server answers with (None: not found)."""
        return cast(Obj | None, await self._json(method, path, **kwargs))

    async def _resource(self, api_version: str, kind: str) -> tuple[tuple[str, ...], str, bool]:
        """A kind's group path (``("apis", "apps", "v1")``), its plural, and whether it is
        namespaced, from the API server's discovery."""
        key = (api_version, kind)
        if key not in self._resources:
            group = _group(api_version)
            listing = await self._json("GET", api_path(*group))
            for resource in (listing or {}).get("resources", []):
                if "/" not in resource["name"]:
                    found = (group, str(resource["name"]), bool(resource["namespaced"]))
                    self._resources[(api_version, resource["kind"])] = found
            if key not in self._resources:
                raise Unserved(f"the cluster does not serve {kind} in {api_version}")
        return self._resources[key]

    async def is_namespaced(self, api_version: str, kind: str) -> bool:
        """Whether the cluster keeps a kind in namespaces (ClusterError: it does not serve it)."""
        return (await self._resource(api_version, kind))[2]

    async def _path(self, namespace: str, obj: Obj) -> tuple[str, Obj]:
        """The URL of an object, and the object with its namespace set if it has one."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        name = (obj.get("metadata") or {}).get("name", "")
        if not (api_version and kind and name):
            raise ClusterError("every object needs apiVersion, kind and metadata.name")
        group, plural, namespaced = await self._resource(api_version, kind)
        if namespaced:
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
            return api_path(*group, "namespaces", namespace, plural, name), obj
        return api_path(*group, plural, name), obj

    async def labelled(
        self, namespace: str, api_version: str, kind: str, selector: str
    ) -> list[Obj]:
        """The objects of a kind in ``namespace`` that match a label ``selector`` (none when
        the cluster does not serve the kind)."""
        try:
            group, plural, namespaced = await self._resource(api_version, kind)
        except ClusterError:
            return []
        if not namespaced:
            return []
        path = api_path(*group, "namespaces", namespace, plural)
        listing = await self._json("GET", path, query=[("labelSelector", selector)])
        items = cast(list[Obj], list((listing or {}).get("items", [])))
        # A listing's items do not name their kind: they are of the one asked for.
        return [
            Obj(apiVersion=api_version, kind=kind, metadata=i.get("metadata") or {}) for i in items
        ]

    async def apply(self, namespace: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply one object (field manager ``fabu``, conflicts forced).

        With ``dry_run`` the API server answers with the object as it would be,
        defaults and admission included, and stores nothing.
        """
        path, obj = await self._path(namespace, obj)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            applied = await self._object(
                "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
            )
        except ClusterError as exc:
            raise ClusterError(
                f"{obj['kind']} {obj['metadata']['name']!r} rejected: {exc.message}"
            ) from exc
        return applied or Obj()

    async def delete(self, namespace: str, obj: Obj) -> bool:
        """Delete ``obj`` (same kind, name and namespace), its dependents in the background;
        False when it was not there."""
        path, _ = await self._path(namespace, obj)
        async with self._gate.request() as answer:
            response = await self._call("DELETE", path, query=[("propagationPolicy", "Background")])
            async with response:
                text = await response.text()
            answer.pushed_back = _pushed_back(response)
        if response.status == 404:
            return False
        if answer.pushed_back:
            raise _again(response, text)
        if response.status >= 400:
            raise ClusterError(_message(text))
        return True

    async def live(self, namespace: str, obj: Obj) -> Obj | None:
        """The live version of ``obj`` (same kind, name and namespace), None when absent."""
        path, _ = await self._path(namespace, obj)
        return await self._object("GET", path)

    async def deployment(self, namespace: str, name: str) -> Obj | None:
        path = api_path("apis", "apps", "v1", "namespaces", namespace, "deployments", name)
        return await self._object("GET", path)

    async def items(
        self, namespace: str, resource: str, query: list[tuple[str, str]] | None = None
    ) -> list[Obj]:
        """List ``pods``, ``events``, ``replicasets``... of a namespace."""
        listing = await self._json("GET", _collection(namespace, resource), query=query)
        return cast(list[Obj], list((listing or {}).get("items", [])))

    async def pod_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        previous: bool,
        tail_lines: int,
        limit_bytes: int,
    ) -> str:
        """The tail of a container's log; the API server's reason when there is none."""
        query = [
            ("container", container),
            ("tailLines", str(tail_lines)),
            ("limitBytes", str(limit_bytes)),
        ]
        if previous:
            query.append(("previous", "true"))
        response = await self._call(
            "GET", api_path("api", "v1", "namespaces", namespace, "pods", pod, "log"), query=query
        )
        async with response:
            text = await response.text(errors="replace")
        if response.status >= 400:
            return f"(no log: {_message(text)})"
        return text

    async def watch(self, namespace: str, resource: str) -> AsyncIterator[tuple[str, Obj]]:
        """List then watch a namespace's ``deployments``, ``replicasets`` or ``pods`` for ever.

        Yields ``("SYNC", obj)`` for each listed object, ``(LISTED, {})`` once they
        all were, then ``(type, obj)`` per event; lists again when the watch's
        resource version is too old.
        """
        path = _collection(namespace, resource)
        while True:
            listing = await self._json("GET", path)
            if listing is None:
                raise ClusterError(f"namespace {namespace!r} cannot be listed")
            version = listing["metadata"]["resourceVersion"]
            for item in listing.get("items", []):
                yield "SYNC", cast(Obj, item)
            yield LISTED, Obj()
            while True:
                query = [
                    ("watch", "1"),
                    ("resourceVersion", version),
                    ("allowWatchBookmarks", "true"),
                    ("timeoutSeconds", str(WATCH_TIMEOUT_S)),
                ]
                response = await self._call(
                    "GET", path, query=query, request_timeout=WATCH_TIMEOUT_S + 30
                )
                gone = False
                async with response:
                    if response.status != 200:
                        break
                    async for line in _lines(response):
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            gone = obj.get("code") == 410
                            break
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            yield event["type"], obj
                if gone:
                    break  # too old: list again
            await asyncio.sleep(0.5)

    async def namespace_exists(self, namespace: str) -> bool:
        """Whether the cluster has ``namespace`` (ClusterError: Fabu may not read it)."""
        found = await self._object("GET", api_path("api", "v1", "namespaces", namespace))
        return found is not None

    async def create_namespace(self, namespace: str) -> None:
        """Create ``namespace`` (ClusterError naming the API server's refusal)."""
        body = Obj(apiVersion="v1", kind="Namespace", metadata={"name": namespace})
        try:
            await self._object("POST", api_path("api", "v1", "namespaces"), body=body)
        except ClusterError as exc:
            raise ClusterError(f"namespace {namespace!r} not created: {exc.message}") from exc

    async def denied(self, namespace: str) -> list[str]:
        """What of the releasing work (``DEPLOYER_NEEDS``) the cluster denies Fabu's account
        in ``namespace``, as "verb resource" ("patch apps/deployments"), by its
        SelfSubjectAccessReviews; empty when everything is allowed."""
        path = api_path("apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews")

        async def allowed(verb: str, group: str, resource: str) -> bool:
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource.partition("/")[0],
                        "subresource": resource.partition("/")[2],
                    }
                },
            }
            answer = await self._json("POST", path, body=cast(Obj, review))
            return bool(((answer or {}).get("status") or {}).get("allowed"))

        needs = DEPLOYER_NEEDS
        answers = await asyncio.gather(*(allowed(*need) for need in needs))
        return [
            f"{verb} {group + '/' if group else ''}{resource}"
            for (verb, group, resource), ok in zip(needs, answers, strict=True)
            if not ok
        ]

    async def close(self) -> None:
        await self._api.close()


# What a release does in its namespace (verb, API group, resource): apply and delete
# its workloads and their companions, follow the rollout, and read why pods fail.
DEPLOYER_NEEDS: tuple[tuple[str, str, str], ...] = (
    ("create", "apps", "deployments"),
    ("patch", "apps", "deployments"),
    ("delete", "apps", "deployments"),
    ("watch", "apps", "deployments"),
    ("watch", "apps", "replicasets"),
    ("patch", "", "services"),
    ("patch", "", "configmaps"),
    ("watch", "", "pods"),
    ("get", "", "pods/log"),
    ("list", "", "events"),
)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """A watch's lines; the connection lost midway (the API server went away) is transient."""
    try:
        async for line in response.content:
            yield line
    except aiohttp.ClientError as exc:
        raise TransientError(f"cluster unreachable: watch cut off: {exc}") from exc


def _collection(namespace: str, resource: str) -> str:
    group = ("api", "v1") if resource in ("pods", "events") else ("apis", "apps", "v1")
    return api_path(*group, "namespaces", namespace, resource)


def segment(text: str) -> str:
    """One segment of an API-server path, percent-encoded: no text changes the path's
    shape, whatever was checked before (``/``, ``?``, ``#``, ``%`` are encoded; ``.`` and
    ``..``, which a URL normalises away, and "" are refused)."""
    if text in ("", ".", ".."):
        raise ClusterError(f"{text!r} cannot be part of an API-server path")
    return urllib.parse.quote(text, safe="")


def api_path(*segments: str) -> str:
    """An API-server path from its segments, each encoded (``segment``)."""
    return "/" + "/".join(segment(s) for s in segments)


def _group(api_version: str) -> tuple[str, ...]:
    """The path of an apiVersion's group: ``("api", "v1")`` or ``("apis", group, version)``."""
    if api_version == "v1":
        return ("api", "v1")
    parts = api_version.split("/")
    if len(parts) != 2:
        raise ClusterError(f"apiVersion {api_version!r} is not a group/version")
    return ("apis", *parts)


def _message(text: str) -> str:
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    return str(status.get("message") or text)[:2000]


def _pushed_back(response: aiohttp.ClientResponse) -> bool:
    return response.status >= 500 or response.status == 429


def _again(response: aiohttp.ClientResponse, text: str) -> TransientError:
    """A 429 or 5xx: try again after the server's ``Retry-After`` (seconds), if it sent one."""
    told = response.headers.get("Retry-After", "")
    error = f"API server answered {response.status}: {_message(text)}"
    if told.isdigit():
        return TransientError(error, delay=float(told))
    return TransientError(error)


class Clusters:
    """One client per environment's cluster, shared by every release to it."""

    def __init__(self, kubeconfig_dir: str = "", gate: Callable[[], Gate] = Gate) -> None:
        self._kubeconfig_dir = kubeconfig_dir
        self._clusters: dict[str, Cluster] = {}
        self._lock = asyncio.Lock()
        self._gate = gate

    async def get(self, env: Environment) -> Cluster:
        key = "in-cluster" if env.in_cluster else str(env.kubeconfig)
        async with self._lock:
            if key not in self._clusters:
                api = await _client(env, self._kubeconfig_dir)
                self._clusters[key] = Cluster(api, self._gate())
            return self._clusters[key]

    async def close(self) -> None:
        for cluster in self._clusters.values():
            await cluster.close()
        self._clusters.clear()


def kubeconfig_file(name: str, directory: str) -> Path:
    """The file an environment's ``kubeconfig`` names, inside the operator's directory.

    ``name`` is relative to ``directory`` or a path inside it; links are resolved
    and must stay inside. Errors name only ``name``, never what it resolved to.
    """
    if not directory:
        raise ClusterError(
            f"kubeconfig {name!r}: kubeconfig files are not enabled here (FABU_KUBECONFIG_DIR)"
        )
    root = Path(directory).resolve()
    try:
        found = (root / name).resolve()
        inside = found.is_relative_to(root)
        is_file = inside and found.is_file()
    except (OSError, RuntimeError, ValueError):  # too long, a loop of links, a NUL
        inside, is_file = True, False
    if not inside:
        raise ClusterError(f"kubeconfig {name!r} is not in the kubeconfig directory")
    if not is_file:
        raise ClusterError(f"kubeconfig {name!r} is not a file in the kubeconfig directory")
    return found


async def _client(env: Environment, kubeconfig_dir: str) -> client.ApiClient:
    """A client of the environment's cluster. Its connection pool has no limit of its
    own: requests are held back by each ``Cluster``'s ``Gate``, and every
    long-lived watch holds a connection (five per namespace watched), which must never
    leave the other requests waiting for one."""
    settings = await _settings(env, kubeconfig_dir)
    settings.connection_pool_maxsize = 0
    return client.ApiClient(configuration=settings)


async def _settings(env: Environment, kubeconfig_dir: str) -> client.Configuration:
    """Where the environment's cluster is and how to sign in to it (ClusterError if not)."""
    # A fresh one, not the shared default.
    settings: client.Configuration = type.__call__(client.Configuration)
    if env.in_cluster:
        try:
            config.load_incluster_config(client_configuration=settings)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise ClusterError(
                f"environment {env.name!r} is in_cluster, and Fabu does not run in a cluster "
                f"here: {exc}"
            ) from exc
        return settings
    if not env.kubeconfig:
        raise ClusterError(f"environment {env.name!r} has neither a kubeconfig nor in_cluster")
    try:
        path = await asyncio.to_thread(kubeconfig_file, env.kubeconfig, kubeconfig_dir)
    except ClusterError as exc:
        raise ClusterError(f"environment {env.name!r}: {exc.message}") from exc
    try:
        await config.load_kube_config(
            config_file=str(path), client_configuration=settings, persist_config=False
        )
    except (config.ConfigException, OSError, ValueError, TypeError, AttributeError) as exc:
        # The loader's words may quote the file; only the kind of failure is told.
        raise ClusterError(
            f"environment {env.name!r}: kubeconfig {env.kubeconfig!r} is not a usable "
            f"kubeconfig ({type(exc).__name__})"
        ) from exc
    return settings
