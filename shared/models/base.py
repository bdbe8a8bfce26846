"""The common ground of Fabu's documents: the base model, the clock, and the name rules."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
)

# Kubernetes object names: RFC 1123 labels, as Services and Deployments need.
DnsLabel = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=53)
]


EnvName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]


Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


def now() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def has_controls(text: str, *, space: bool = False) -> bool:
    """Whether ``text`` holds an ASCII control character (or, with ``space``, a space)."""
    return any(ord(c) < 32 or ord(c) == 127 or (space and c == " ") for c in text)
