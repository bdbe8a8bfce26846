"""``make run``: on the running stack, start Fabu's five services with demo data.

Demo data: an environment ``test`` (namespace ``demo`` on the local cluster) and
``production`` (namespace ``demo-prod``, releasing only versions that succeeded in
``test``: promote to it from the Plans page; there hello is a canary judged by the
analysis template ``error-rate`` and greeter a blue-green release),
the shared templates ``devstack/demo/web-service.yaml.j2`` (Fabu's base
parameters) and ``api-service.yaml.j2`` (which declares its own, with a
secret), and two services whose images are pushed to the local registry. Result emails go to a local
SMTP server that writes them to ``.stack/logs/mail.log``.
"""

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from devstack.paths import state_dir
from devstack.registry import push_image
from devstack.stack import Stack, free_port
from devstack.system import FabuSystem, new_token
from shared.secrets import new_key

TEMPLATE = Path(__file__).parent / "demo" / "web-service.yaml.j2"
# A template that declares its parameters, in the schema file beside it.
DECLARED = Path(__file__).parent / "demo" / "api-service.yaml.j2"
DEMO_SERVICES = {
    "hello": ["1.0.0", "1.1.0", "1.2.0-never-ready", "1.3.0-crash-loop"],
    "greeter": ["2.0.0", "2.1.0"],
}
DEMO_NAMESPACES = ("demo", "demo-prod")
API_PORT = int(os.environ.get("FABU_HTTP_PORT", "8000"))


class MailLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content)
        with self.path.open("a") as log:
            log.write(f"To: {mail['To']}\nSubject: {mail['Subject']}\n\n{mail.get_payload()}\n")
        return "250 OK"


# The demo's analysis template: the 5xx share of a version's requests.
ERROR_RATE = {
    "name": "error-rate",
    "description": "5xx share of the new version's requests over the last minute",
    "metrics": [
        {
            "name": "errors",
            "query": (
                'sum(rate(http_requests_total{service="{{service}}",version="{{version}}",'
                'code=~"5.."}[1m])) / sum(rate(http_requests_total{service="{{service}}",'
                'version="{{version}}"}[1m]))'
            ),
            "success": "result < 0.05",
            "interval_s": 10,
            "count": 3,
        }
    ],
}


async def seed(api: httpx.AsyncClient, env: dict[str, str]) -> None:
    if (await api.get("/services/hello")).status_code == 200:
        return
    registry = env["FABU_REGISTRY_URL"]
    for name, tags in DEMO_SERVICES.items():
        for tag in tags:
            await push_image(registry, f"demo/{name}", tag)
    # production takes only versions that succeeded in test.
    for name, namespace, upstream in (
        ("test", DEMO_NAMESPACES[0], None),
        ("production", DEMO_NAMESPACES[1], "test"),
    ):
        fields = {
            "name": name,
            "namespace": namespace,
            # Its name in the kubeconfig directory (FABU_KUBECONFIG_DIR).
            "kubeconfig": Path(env["KUBECONFIG"]).name,
            "rollout_timeout_s": 60,
            "requires_success_in": upstream,
        }
        await _ok(api.post("/environments", json=fields))
    template = await _ok(
        api.post("/templates", json={"name": "web-service", "content": TEMPLATE.read_text()})
    )
    mail = [
        {
            "type": "email",
            "recipients": ["team@example.com"],
            "events": ["started", "succeeded", "failed"],
        }
    ]
    await _ok(api.put("/environments/test/notifications", json=mail))
    declared = await _ok(
        api.post(
            "/templates",
            json={
                "name": "api-service",
                "content": DECLARED.read_text(),
                "parameters": json.loads(
                    DECLARED.with_name(DECLARED.name + ".schema.json").read_text()
                ),
            },
        )
    )
    host = registry.removeprefix("http://").removeprefix("https://")
    # hello uses the base parameters; greeter a template that declares its own.
    configs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "hello": (template, {"replicas": 2, "labels": {"team": "demo"}}),
        "greeter": (
            declared,
            {
                "owner": "greetings",
                "args": ["--greeting=hello"],
                "database": {"password": secrets.token_urlsafe(12)},
            },
        ),
    }
    await _ok(api.post("/analysis-templates", json=ERROR_RATE))
    # In production hello goes out as a canary judged by the error rate (with no traffic
    # in the demo Prometheus answers no data: the step waits for a person) and greeter
    # blue-green, its preview waiting for a person.
    production: dict[str, dict[str, Any]] = {
        "hello": {"canary": [{"weight": 50, "analysis": ["error-rate"]}]},
        "greeter": {"blue_green": {"scale_down_delay_s": 15}},
    }
    for name, (used, params) in configs.items():
        await _ok(
            api.post(
                "/services",
                json={"name": name, "image_repository": f"{host}/demo/{name}", "team": "demo"},
            )
        )
        for environment in ("test", "production"):
            more = production[name] if environment == "production" else {}
            await _ok(
                api.put(
                    f"/services/{name}/config/{environment}",
                    json={
                        "template_id": used["id"],
                        "params": {**params, "rollout_timeout_s": 20, **more},
                    },
                )
            )


async def _ok(request: Any) -> dict[str, Any]:
    response: httpx.Response = await request
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def wait_healthy(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"the API at {url} did not become healthy; see .stack/logs/api.log")


def _kept(path: Path, make: Callable[[], str]) -> str:
    """A secret kept between runs in the stack's state directory, made on the first."""
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> int:
    stack = Stack()
    if not stack.is_up():
        print("the stack is not running: make stack-up", file=sys.stderr)
        return 1
    env = stack.env()
    logs = stack.root / "logs"
    for namespace in DEMO_NAMESPACES:
        subprocess.run(  # noqa: S603 - kubectl from the stack, arguments built here
            [
                env["FABU_KUBECTL"],
                f"--kubeconfig={env['KUBECONFIG']}",
                "create",
                "namespace",
                namespace,
            ],
            capture_output=True,
            check=False,
        )
    mail = MailLog(logs / "mail.log")
    smtp = Controller(mail, hostname="127.0.0.1", port=free_port())
    smtp.start()
    secret_key = _kept(state_dir() / "secret-key", new_key)
    admin_password = _kept(state_dir() / "admin-password", lambda: secrets.token_urlsafe(12))
    system = FabuSystem(
        env,
        logs,
        smtp_port=smtp.port,
        api_port=API_PORT,
        secret_key=secret_key,
        admin_password=admin_password,
        # As the chart does: the clouds' instance metadata is out of reach.
        extra_env={"FABU_EGRESS_DENY": "metadata,link-local"},
    )
    system.start_all()
    url = system.api_url
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        asyncio.run(wait_healthy(url))

        async def seeded() -> str:
            token = await new_token(url, "admin", admin_password, "make run")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=headers) as api:
                await seed(api, env)
            return token

        token = asyncio.run(seeded())
        print(
            f"\nFabu is running: open {url} in a browser (OpenAPI at {url}/openapi.json)\n"
            f"Log in as admin with password {admin_password} (kept in .stack/admin-password)\n\n"
            "Release the demo service with an API token made for this run:\n"
            f"  export FABU_TOKEN={token}\n"
            f'  curl -s -X POST {url}/api/v1/releases -H "Authorization: Bearer $FABU_TOKEN" \\\n'
            "    -H 'Content-Type: application/json' \\\n"
            '    -d \'{"service": "hello", "environment": "test", "version": "1.1.0"}\'\n'
            f'  curl -s {url}/api/v1/releases -H "Authorization: Bearer $FABU_TOKEN"\n\n'
            f"Result emails: {mail.path}; service logs: {logs}/\n"
            "Stop with Ctrl-C (the stack keeps running: make stack-down)\n",
            flush=True,
        )
        while not stop and system.alive():
            time.sleep(0.5)
    finally:
        system.stop()
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
