"""Start, stop and report the local stack.

Every process runs on 127.0.0.1 on a port chosen when the stack comes up, in its
own process group, with its data and log under the state folder. ``up`` writes
a kubeconfig and an env file; ``down`` stops every process it started. A
component is left out, and its URL passed through, when the environment already
names a real one (``KUBECONFIG``, ``FABU_MONGO_URL``, ``FABU_NATS_URL``,
``FABU_REGISTRY_URL``, ``FABU_PROMETHEUS_URL``).

The local cluster gets the Gateway API's CRDs (its standard channel) as it comes up.
The local Prometheus scrapes every target listed in the JSON files of
``<state folder>/prometheus/targets`` (Prometheus' file service discovery): tests
add and remove targets by writing files, which reach it within about two seconds.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack import build, kwok, pki
from devstack.paths import GOMOD, state_dir

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0

# The services the environment may name instead of the stack's own.
EXTERNAL_KEYS = (
    "KUBECONFIG",
    "FABU_MONGO_URL",
    "FABU_NATS_URL",
    "FABU_REGISTRY_URL",
    "FABU_PROMETHEUS_URL",
)
ENV_KEYS = (*EXTERNAL_KEYS, "FABU_KUBECTL")
# How often the local Prometheus scrapes and reads its target files again.
SCRAPE_INTERVAL = "1s"


class StackError(RuntimeError):
    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log  # the failed component's log, when one failed


@dataclass
class Process:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    pid: int = 0

    @property
    def binary(self) -> str:
        return self.argv[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http_ok(url: str, context: ssl.SSLContext | None = None, token: str = "") -> bool:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URLs we built
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _insecure() -> ssl.SSLContext:
    # Only for the health endpoints of the controller manager and scheduler,
    # which serve a self-signed certificate on loopback.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _mongo_ok(url: str) -> bool:
    from pymongo import MongoClient  # noqa: PLC0415 - only the readiness probe needs it
    from pymongo.errors import PyMongoError  # noqa: PLC0415

    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    else:
        return True
    finally:
        client.close()


def _alive(pid: int, binary: str) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.split(b"\0", 1)[0].decode(errors="replace") == binary


class Stack:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir()
        self.pid_file = self.root / "pids.json"
        self.env_file = self.root / "env"
        # In a directory of its own: Fabu reads kubeconfigs only from FABU_KUBECONFIG_DIR.
        self.kubeconfig = self.root / "kubeconfigs" / "local.yaml"
        # Prometheus scrapes the targets listed in the *.json files here.
        self.prometheus_targets = self.root / "prometheus" / "targets"

    # ---- reporting -------------------------------------------------------------
    def _records(self) -> dict[str, list[Any]]:
        """Each component's ``[pid, binary, argv]``, as started."""
        if not self.pid_file.exists():
            return {}
        records: dict[str, list[Any]] = json.loads(self.pid_file.read_text())
        return records

    def pids(self) -> dict[str, tuple[int, str]]:
        return {name: (int(v[0]), str(v[1])) for name, v in self._records().items()}

    def running(self) -> dict[str, bool]:
        return {name: _alive(pid, binary) for name, (pid, binary) in self.pids().items()}

    def is_up(self) -> bool:
        """Every component runs, and the env file names all the stack gives (a stack
        started by an older checkout, without some of them, is not up)."""
        states = self.running()
        return bool(states) and all(states.values()) and set(ENV_KEYS) <= set(self.env())

    def env(self) -> dict[str, str]:
        if not self.env_file.exists():
            return {}
        pairs = (line.split("=", 1) for line in self.env_file.read_text().splitlines() if line)
        return dict(pairs)

    # ---- up --------------------------------------------------------------------
    def up(self, ready_delay_ms: int = 1000) -> dict[str, str]:
        if self.is_up():
            return self.env()
        self.down()
        # Values equal to our own earlier env file come from a shell that sourced
        # it; only other values name real external services.
        ours = {**self.env(), "KUBECONFIG": str(self.kubeconfig)}
        external = {
            k: v for k, v in os.environ.items() if k in EXTERNAL_KEYS and v and v != ours.get(k)
        }
        build.build_all(self._needed(external))
        started = time.monotonic()
        try:
            env = self._start_stack(external, ready_delay_ms)
        except StackError as exc:
            # A port found free was taken by another socket before its component
            # bound it: start again, on new ports.
            if "address already in use" not in exc.log:
                raise
            print(f"{exc}: a port was taken meanwhile; starting again on new ports")
            env = self._start_stack(external, ready_delay_ms)
        lines = "".join(f"{key}={env[key]}\n" for key in ENV_KEYS)
        self.env_file.write_text(lines)
        print(f"stack up in {time.monotonic() - started:.1f}s; env in {self.env_file}")
        return env

    def _start_stack(self, external: dict[str, str], ready_delay_ms: int) -> dict[str, str]:
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "logs").mkdir(parents=True)
        env = dict(external)
        env["FABU_KUBECTL"] = str(build.KUBERNETES.binary("kubectl"))
        first, second, third = self._plan(env, external, ready_delay_ms)
        try:
            # etcd first; then the API server on it; then what needs the API
            # server. The rest starts at once.
            self._start(first)
            self._wait([p for p in first if p.name == "etcd"])
            self._start(second)
            self._wait([p for p in second if p.name == "kube-apiserver"])
            with ThreadPoolExecutor(max_workers=1) as pool:
                # While the controller manager, scheduler and KWOK start.
                crds = pool.submit(self._gateway_api) if "KUBECONFIG" not in external else None
                self._start(third)
                self._wait(first + second + third)
                if "KUBECONFIG" not in external:
                    self._nodes()
                if crds is not None:
                    crds.result()
        except BaseException:
            self.down()
            raise
        return env

    def _needed(self, external: dict[str, str]) -> list[str]:
        names = ["kubernetes"]  # kubectl is used even against an external cluster
        if "KUBECONFIG" not in external:
            names += ["etcd", "kwok"]
        if "FABU_MONGO_URL" not in external:
            names.append("secantusdb")
        if "FABU_NATS_URL" not in external:
            names.append("nats")
        if "FABU_REGISTRY_URL" not in external:
            names.append("registry")
        if "FABU_PROMETHEUS_URL" not in external:
            names.append("prometheus")
        return names

    def _plan(
        self, env: dict[str, str], external: dict[str, str], ready_delay_ms: int
    ) -> tuple[list[Process], list[Process], list[Process]]:
        first: list[Process] = []
        second: list[Process] = []
        third: list[Process] = []
        if "FABU_NATS_URL" not in external:
            first.append(self._nats(env))
        if "FABU_MONGO_URL" not in external:
            first.append(self._secantusdb(env))
        if "FABU_REGISTRY_URL" not in external:
            first.append(self._registry(env))
        if "FABU_PROMETHEUS_URL" not in external:
            first.append(self._prometheus(env))
        if "KUBECONFIG" not in external:
            etcd_url = f"http://127.0.0.1:{free_port()}"
            first.append(self._etcd(etcd_url))
            second.append(self._apiserver(etcd_url))
            third += self._control_plane(ready_delay_ms)
            env["KUBECONFIG"] = str(self.kubeconfig)
        return first, second, third

    # ---- components ------------------------------------------------------------
    def _nats(self, env: dict[str, str]) -> Process:
        port, monitor = free_port(), free_port()
        env["FABU_NATS_URL"] = f"nats://127.0.0.1:{port}"
        return Process(
            "nats",
            [
                str(build.NATS.binary("nats-server")),
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                str(monitor),
                "-js",
                "-sd",
                str(self.root / "nats"),
            ],
            lambda: _http_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"),
        )

    def _secantusdb(self, env: dict[str, str]) -> Process:
        """SecantusDB, a separate process from its own virtual environment in the cache
        (GPL-2.0-only: never imported by Fabu). It presents itself as a one-node replica
        set, which clients must not go looking for: ``directConnection=true``."""
        port = free_port()
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        env["FABU_MONGO_URL"] = url
        # An empty configuration file of its own: no secantusd.toml found in the
        # working or home directory changes how it runs.
        config = self.root / "secantusd.toml"
        config.write_text("# the local stack passes everything on the command line\n")
        return Process(
            "secantusdb",
            [
                *build.SECANTUSDB.argv(),
                f"--config={config}",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--storage-path={self.root / 'secantusdb'}",
                "--log-level=WARNING",
                # Without it, a SIGKILL loses the writes of the last few
                # milliseconds, acknowledged or not (measured: 20 of 300 updates
                # just before the kill), which production MongoDB, journalling
                # majority writes, does not. It doubles the cost of a write here.
                "--sync-on-commit",
            ],
            lambda: _mongo_ok(url),
        )

    def _registry(self, env: dict[str, str]) -> Process:
        port = free_port()
        config = self.root / "registry.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(self.root / "registry")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"127.0.0.1:{port}"},
                }
            )
        )
        url = f"http://127.0.0.1:{port}"
        env["FABU_REGISTRY_URL"] = url
        binary = shutil.which(build.REGISTRY_BINARY) or build.REGISTRY_BINARY
        return Process("registry", [binary, "serve", str(config)], lambda: _http_ok(f"{url}/v2/"))

    def _prometheus(self, env: dict[str, str]) -> Process:
        port = free_port()
        folder = self.prometheus_targets.parent
        self.prometheus_targets.mkdir(parents=True)
        config = folder / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": SCRAPE_INTERVAL,
                        # Never longer than the interval (Prometheus refuses that).
                        "scrape_timeout": SCRAPE_INTERVAL,
                        "evaluation_interval": SCRAPE_INTERVAL,
                    },
                    "scrape_configs": [
                        {
                            "job_name": "fabu-test-exporters",
                            "file_sd_configs": [
                                {
                                    "files": [str(self.prometheus_targets / "*.json")],
                                    "refresh_interval": SCRAPE_INTERVAL,
                                }
                            ],
                        }
                    ],
                }
            )
        )
        url = f"http://127.0.0.1:{port}"
        env["FABU_PROMETHEUS_URL"] = url
        return Process(
            "prometheus",
            [
                str(build.PROMETHEUS.binary("prometheus")),
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={folder / 'data'}",
                # How often new targets reach the scrapers (5s by default): a test's
                # exporter is scraped, or dropped, within about two seconds.
                f"--scrape.discovery-reload-interval={SCRAPE_INTERVAL}",
                "--log.level=warn",
            ],
            lambda: _http_ok(f"{url}/-/ready"),
        )

    def _etcd(self, url: str) -> Process:
        peer = f"http://127.0.0.1:{free_port()}"
        return Process(
            "etcd",
            [
                str(build.ETCD.binary("etcd")),
                "--name=fabu",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=fabu={peer}",
                "--log-level=warn",
                # Test data only: skipping fsync keeps the control plane fast on small disks.
                "--unsafe-no-fsync",
            ],
            lambda: _http_ok(f"{url}/health"),
        )

    def _apiserver(self, etcd_url: str) -> Process:
        certs = self.root / "pki"
        pki.make(certs)
        token = secrets.token_hex(24)
        (certs / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
        port = free_port()
        server = f"https://127.0.0.1:{port}"
        self.kubeconfig.parent.mkdir(mode=0o700, exist_ok=True)
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "fabu-local",
                            "cluster": {
                                "server": server,
                                "certificate-authority": str(certs / "ca.crt"),
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "fabu-local",
                            "context": {"cluster": "fabu-local", "user": "admin"},
                        }
                    ],
                    "current-context": "fabu-local",
                }
            )
        )
        self.kubeconfig.chmod(0o600)
        ca = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        return Process(
            "kube-apiserver",
            [
                str(build.KUBERNETES.binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={certs / 'apiserver.crt'}",
                f"--tls-private-key-file={certs / 'apiserver.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--token-auth-file={certs / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=2000",
                "--max-mutating-requests-inflight=1000",
                "--v=0",
            ],
            lambda: _http_ok(f"{server}/readyz", ca, token),
        )

    def _control_plane(self, ready_delay_ms: int) -> list[Process]:
        kubeconfig = str(self.kubeconfig)
        certs = self.root / "pki"
        delegated = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        cm_port, sched_port, kwok_port = free_port(), free_port(), free_port()
        config = self.root / "kwok.yaml"
        kwok.write_config(config, _module_dir(build.KWOK), ready_delay_ms)
        return [
            Process(
                "kube-controller-manager",
                [
                    str(build.KUBERNETES.binary("kube-controller-manager")),
                    *delegated,
                    f"--secure-port={cm_port}",
                    f"--cert-dir={certs / 'controller-manager'}",
                    f"--service-account-private-key-file={certs / 'sa.key'}",
                    f"--root-ca-file={certs / 'ca.crt'}",
                    "--use-service-account-credentials=false",
                    "--kube-api-qps=500",
                    "--kube-api-burst=1000",
                    "--concurrent-deployment-syncs=20",
                    "--concurrent-replicaset-syncs=20",
                ],
                lambda: _http_ok(f"https://127.0.0.1:{cm_port}/healthz", _insecure()),
            ),
            Process(
                "kube-scheduler",
                [
                    str(build.KUBERNETES.binary("kube-scheduler")),
                    *delegated,
                    f"--secure-port={sched_port}",
                    f"--cert-dir={certs / 'scheduler'}",
                ],
                lambda: _http_ok(f"https://127.0.0.1:{sched_port}/healthz", _insecure()),
            ),
            Process(
                "kwok",
                [
                    str(build.KWOK.binary("kwok")),
                    f"--kubeconfig={kubeconfig}",
                    f"--config={config}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={kwok.NODE_ANNOTATION}=fake",
                    "--node-ip=127.0.0.1",
                    f"--node-port={kwok_port}",
                    f"--server-address=127.0.0.1:{kwok_port}",
                    "--cidr=10.0.0.1/16",
                    "--node-lease-duration-seconds=40",
                ],
                lambda: _http_ok(f"http://127.0.0.1:{kwok_port}/healthz"),
            ),
        ]

    def _gateway_api(self) -> None:
        """Apply the Gateway API's standard channel (its CRDs and the admission policy
        that guards their upgrades) and wait until every CRD is established."""
        folder = _module_dir(build.GATEWAY_API) / "config" / "crd" / "standard"
        # Server-side: the HTTPRoute CRD is too big for client-side apply's annotation.
        applied = self._kubectl(
            "apply", "--server-side", f"--filename={folder}", "--output=name"
        ).split()
        crds = [name for name in applied if name.startswith("customresourcedefinition")]
        # Polled with get: kubectl wait takes a second even when all are established.
        established = '{range .items[*]}{.status.conditions[?(@.type=="Established")].status} {end}'

        def all_established() -> bool:
            states = self._kubectl("get", *crds, f"--output=jsonpath={established}").split()
            return states == ["True"] * len(crds)

        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all_established():
            if time.monotonic() > deadline:
                raise StackError(f"the Gateway API CRDs not established after {READY_TIMEOUT_S}s")
            time.sleep(0.1)

    def _kubectl(self, *args: str) -> str:
        kubectl = [str(build.KUBERNETES.binary("kubectl")), f"--kubeconfig={self.kubeconfig}"]
        done = subprocess.run(  # noqa: S603 - kubectl from the stack, arguments built here
            [*kubectl, *args], capture_output=True, check=False
        )
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace")
            raise StackError(f"kubectl {args[0]} failed: {stderr.strip()}", stderr)
        return done.stdout.decode()

    def _nodes(self) -> None:
        kubectl = [str(build.KUBERNETES.binary("kubectl")), f"--kubeconfig={self.kubeconfig}"]
        subprocess.run(  # noqa: S603 - kubectl from the stack, arguments built here
            [*kubectl, "apply", "-f", "-"],
            input=kwok.nodes_manifest().encode(),
            check=True,
            capture_output=True,
        )
        subprocess.run(  # noqa: S603 - kubectl from the stack, arguments built here
            [
                *kubectl,
                "wait",
                "--for=condition=Ready",
                "node",
                "--all",
                f"--timeout={int(READY_TIMEOUT_S)}s",
            ],
            check=True,
            capture_output=True,
        )

    # ---- one component, for fault drills ----------------------------------------
    def stop_component(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop one running component (``sig``, then SIGKILL after the stop timeout)."""
        pid, binary = self.pids()[name]
        _stop_groups({name: pid}, {name: binary}, sig)

    def start_component(self, name: str) -> None:
        """Start a stopped component again, as it was started (same ports, same data)."""
        record = self._records()[name]
        pid, binary, argv = int(record[0]), str(record[1]), list(record[2])
        if _alive(pid, binary):
            raise StackError(f"{name} is running")
        self._start([Process(name, argv, lambda: True)])

    # ---- process control -------------------------------------------------------
    def _start(self, processes: list[Process]) -> None:
        pids = self._records()
        for p in processes:
            # posix_spawn, not Popen: these are daemons that outlive this process,
            # in a session of their own so that down can signal the whole group.
            log = str(self.root / "logs" / f"{p.name}.log")
            p.pid = os.posix_spawn(
                p.argv[0],
                p.argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
            pids[p.name] = [p.pid, p.binary, p.argv]
            self.pid_file.write_text(json.dumps(pids))
            _await_exec(p)

    def _wait(self, processes: list[Process]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = list(processes)
        while pending:
            for p in list(pending):
                if not _alive(p.pid, p.binary):
                    log = self.root / "logs" / f"{p.name}.log"
                    raise StackError(f"{p.name} exited; see {log}", log.read_text(errors="replace"))
                if p.ready():
                    pending.remove(p)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.name for p in pending)
                raise StackError(f"not ready after {READY_TIMEOUT_S:.0f}s: {names}")
            if pending:
                time.sleep(0.2)

    def down(self) -> list[str]:
        """Stop every process this stack started; return the names stopped."""
        pids = self.pids()
        live = {name: pid for name, (pid, binary) in pids.items() if _alive(pid, binary)}
        _stop_groups(live, {name: binary for name, (_, binary) in pids.items()}, signal.SIGTERM)
        self.pid_file.unlink(missing_ok=True)
        return sorted(live)


def _stop_groups(live: dict[str, int], binaries: dict[str, str], sig: signal.Signals) -> None:
    """Signal each process group, SIGKILL what outlives the stop timeout, and reap them."""
    for pid in live.values():
        _signal_group(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(
        _alive(pid, binaries[name]) for name, pid in live.items()
    ):
        time.sleep(0.1)
    for name, pid in live.items():
        if _alive(pid, binaries[name]):
            _signal_group(pid, signal.SIGKILL)
    while any(_alive(pid, binaries[name]) for name, pid in live.items()):
        time.sleep(0.05)
    for pid in live.values():
        # A process seen mid-exit is not yet a zombie to reap: wait for our own.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _await_exec(p: Process) -> None:
    """posix_spawn may return before the exec; until then /proc shows our own command line."""
    deadline = time.monotonic() + 10
    while not _alive(p.pid, p.binary):
        if time.monotonic() > deadline or not Path(f"/proc/{p.pid}").exists():
            raise StackError(f"{p.name} did not start: {' '.join(p.argv)}")
        time.sleep(0.01)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _module_dir(component: build.Component) -> Path:
    """The pinned module's source in Go's module cache (downloaded if missing)."""
    done = subprocess.run(  # noqa: S603 - arguments built here
        ["go", "mod", "download", "-json", f"{component.module}@{component.version}"],  # noqa: S607 - the developer's go
        cwd=GOMOD / component.name,
        check=True,
        capture_output=True,
    )
    return Path(json.loads(done.stdout)["Dir"])
