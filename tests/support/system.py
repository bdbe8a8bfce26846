"""Fabu's five services as real processes on the local stack, for end-to-end tests."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from devstack.stack import free_port
from tests.support.stack import StackEnv

STAGES = ("api", "renderer", "deployer", "tracker", "notifier")


class FabuSystem:
    def __init__(self, stack: StackEnv, logs: Path, name: str, smtp_port: int) -> None:
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.logs = logs
        self.env = {
            **os.environ,
            "FABU_MONGO_URL": stack.mongo_url,
            "FABU_MONGO_DB": name.replace("-", "_"),
            "FABU_NATS_URL": stack.nats_url,
            "FABU_NATS_PREFIX": name.replace("-", "_"),
            "FABU_REGISTRY_URL": stack.registry_url,
            "FABU_SMTP_HOST": "127.0.0.1",
            "FABU_SMTP_PORT": str(smtp_port),
            "FABU_PUBLIC_URL": self.api_url,
            # Short, so a killed stage's message reaches its replacement soon.
            "FABU_ACK_WAIT_S": "3",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, stage: str) -> None:
        env = {**self.env, "FABU_HTTP_PORT": str(self.api_port if stage == "api" else 0)}
        with (self.logs / f"{stage}.log").open("ab") as log:
            self.processes[stage] = subprocess.Popen(
                [sys.executable, "-m", f"services.{stage}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, stage: str) -> None:
        process = self.processes.pop(stage)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> dict[str, int]:
        """SIGTERM every stage; returns their exit codes."""
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {stage: p.wait(timeout=30) for stage, p in self.processes.items()}
        self.processes.clear()
        return codes

    def log(self, stage: str) -> str:
        return (self.logs / f"{stage}.log").read_text(errors="replace")
