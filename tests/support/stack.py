"""The stack the tests run against, as typed values."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StackEnv:
    kubeconfig: Path
    mongo_url: str
    nats_url: str
    registry_url: str
    prometheus_url: str
    kubectl: Path
    env: dict[str, str]  # everything the stack's env file says

    def as_env(self) -> dict[str, str]:
        return dict(self.env)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "StackEnv":
        return cls(
            kubeconfig=Path(env["KUBECONFIG"]),
            mongo_url=env["FABU_MONGO_URL"],
            nats_url=env["FABU_NATS_URL"],
            registry_url=env["FABU_REGISTRY_URL"],
            prometheus_url=env["FABU_PROMETHEUS_URL"],
            kubectl=Path(env["FABU_KUBECTL"]),
            env=dict(env),
        )
