"""Fabu's five services as real processes on the local stack (make run, tests, bench)."""

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from devstack.stack import free_port
from shared.secrets import new_key

STAGES = ("api", "renderer", "deployer", "tracker", "notifier")


class FabuSystem:
    def __init__(
        self,
        stack_env: dict[str, str],
        logs: Path,
        *,
        smtp_port: int,
        name: str = "",
        api_port: int = 0,
        extra_env: dict[str, str] | None = None,
        secret_key: str = "",
        admin_password: str = "",
    ) -> None:
        """``name`` gives the system a database and stream of its own (default: ``fabu``).

        ``admin_password`` is the first user's (``admin``) when the database has no users.
        """
        self.api_port = api_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.logs = logs
        self.admin_password = admin_password or secrets.token_urlsafe(16)
        registry = stack_env.get("FABU_REGISTRY_URL", "")
        host = registry.split("://", 1)[-1]
        self.env = {
            **os.environ,
            **stack_env,
            # Seals notification secrets at rest; one per system unless given.
            "FABU_SECRET_KEY": secret_key or new_key(),
            # The local registry speaks plain HTTP, without credentials.
            "FABU_REGISTRIES": json.dumps({host: {"url": registry}} if registry else {}),
            "FABU_SMTP_HOST": "127.0.0.1",
            "FABU_SMTP_PORT": str(smtp_port),
            "FABU_PUBLIC_URL": self.api_url,
            "FABU_ADMIN_PASSWORD": self.admin_password,
            # Environments name kubeconfigs in the stack's kubeconfig directory.
            "FABU_KUBECONFIG_DIR": str(Path(stack_env.get("KUBECONFIG", ".")).parent),
            **(extra_env or {}),
        }
        if name:
            self.env["FABU_MONGO_DB"] = name.replace("-", "_")
            self.env["FABU_NATS_PREFIX"] = name.replace("-", "_")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # Where each process serves /healthz and /metrics (the API: its own port).
        self.ports: dict[str, int] = {}

    def start(self, stage: str, extra_env: dict[str, str] | None = None, name: str = "") -> None:
        """Start a stage's process, known as ``name`` (default: the stage; another name
        runs a further replica, the API's on a port of its own: :meth:`url`), logging
        to ``<name>.log``."""
        name = name or stage
        env = {
            **self.env,
            "FABU_HTTP_PORT": str(self.api_port if name == "api" else free_port()),
            **(extra_env or {}),
        }
        self.ports[name] = int(env["FABU_HTTP_PORT"])
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(  # noqa: S603 - this Python running a Fabu stage
                [sys.executable, "-m", f"services.{stage}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start_all(self) -> None:
        for stage in STAGES:
            self.start(stage)

    def kill(self, stage: str) -> None:
        process = self.processes.pop(stage)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes.values())

    def url(self, name: str) -> str:
        """Where the process ``name`` serves HTTP (an API replica: the API itself)."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop(self, *names: str) -> dict[str, int]:
        """SIGTERM the named processes (default: every one); returns their exit codes."""
        stopping = {name: self.processes.pop(name) for name in names or list(self.processes)}
        for process in stopping.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return {name: p.wait(timeout=30) for name, p in stopping.items()}

    def log(self, stage: str) -> str:
        return (self.logs / f"{stage}.log").read_text(errors="replace")


async def login(http: httpx.AsyncClient, user: str, password: str) -> dict[str, str]:
    """Log in to the API at ``http``'s base URL; the headers a session's changes send.

    The session cookie is Secure, which httpx keeps to HTTPS, so it is sent by hand.
    """
    answer = await http.post("/api/v1/auth/login", json={"username": user, "password": password})
    answer.raise_for_status()
    cookie = answer.cookies["fabu_session"]
    return {"Cookie": f"fabu_session={cookie}", "X-CSRF-Token": answer.json()["csrf_token"]}


async def new_token(api_url: str, user: str, password: str, name: str) -> str:
    """An API token for ``user``, made through a login session."""
    async with httpx.AsyncClient(base_url=api_url) as http:
        session = await login(http, user, password)
        made = await http.post("/api/v1/tokens", json={"name": name}, headers=session)
        made.raise_for_status()
        token: str = made.json()["token"]
        return token
