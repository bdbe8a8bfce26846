"""Where notifications go, and each delivery's attempts."""

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from shared.models.base import Email, Model, has_controls, now

NotifyEvent = Literal["started", "succeeded", "failed", "canary_paused", "approval_needed"]


ChannelType = Literal["email", "dingtalk", "wecom", "feishu", "webhook"]


def _result_events() -> list[NotifyEvent]:
    return ["succeeded", "failed"]


class Channel(Model):
    """Where one kind of notification goes. ``url`` and ``secret`` are sealed at rest."""

    type: ChannelType
    url: str = Field(default="", max_length=2000)
    recipients: list[Email] = Field(default_factory=list, max_length=100)
    # DingTalk: the mobiles to @ in the group.
    mobiles: list[Annotated[str, StringConstraints(pattern=r"^\+?[0-9-]{5,20}$")]] = Field(
        default_factory=list, max_length=50
    )
    secret: str = Field(default="", max_length=500)
    events: list[NotifyEvent] = Field(default_factory=_result_events)
    language: Literal["en", "zh-CN"] = "en"

    @model_validator(mode="after")
    def _target(self) -> "Channel":
        for name, value in (("url", self.url), ("secret", self.secret)):
            if has_controls(value):
                raise ValueError(
                    f"{name}: control characters (such as line breaks) are not allowed"
                )
        if self.type == "email" and not self.recipients:
            raise ValueError("an email channel needs recipients")
        if self.type != "email" and not self.url.startswith(("http://", "https://", "fernet:")):
            raise ValueError(f"a {self.type} channel needs an http(s) url")
        return self

    def key(self, url: str) -> str:
        """A stable name for the channel in delivery records (from its plain url)."""
        target = url or ",".join(sorted(self.recipients))
        return f"{self.type}-{hashlib.sha256(target.encode()).hexdigest()[:10]}"


class Attempt(Model):
    at: datetime = Field(default_factory=now)
    outcome: str


class Delivery(Model):
    """What happened to one notification of a release (event and channel)."""

    # "sending" (claimed), "sent", "failed" (will retry), "refused" (will not),
    # or "unknown" (a notifier died while sending: not sent again).
    state: str
    attempts: int = 0
    last_error: str = ""
    at: datetime = Field(default_factory=now)
    history: list[Attempt] = Field(default_factory=list)
