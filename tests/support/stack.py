"""The stack the tests run against, as typed values."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StackEnv:
    kubeconfig: Path
    mongo_url: str
    nats_url: str
    registry_url: str
    kubectl: Path

    def as_env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "FABU_MONGO_URL": self.mongo_url,
            "FABU_NATS_URL": self.nats_url,
            "FABU_REGISTRY_URL": self.registry_url,
            "FABU_KUBECTL": str(self.kubectl),
        }

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "StackEnv":
        return cls(
            kubeconfig=Path(env["KUBECONFIG"]),
            mongo_url=env["FABU_MONGO_URL"],
            nats_url=env["FABU_NATS_URL"],
            registry_url=env["FABU_REGISTRY_URL"],
            kubectl=Path(env["FABU_KUBECTL"]),
        )
