"""Notification channels from the forms of the environment and service pages."""

from typing import get_args

from services.api import notification_service
from services.api.access import Principal
from services.api.context import Api
from shared.models.notifications import Channel, NotifyEvent


def channel_of(values: dict[str, str]) -> Channel:
    """A channel from the form: only the fields of its kind are read (an email channel
    has recipients; a chat robot or webhook a URL and secret; DingTalk mobiles too)."""
    kind = values.get("type", "")

    def listed(name: str) -> list[str]:
        return [v.strip() for v in values.get(name, "").replace("\n", ",").split(",") if v.strip()]

    def its(name: str) -> str:
        return values.get(name, "").strip() if name in FIELDS.get(kind, ()) else ""

    return Channel.model_validate(
        {
            "type": kind,
            "url": its("url"),
            "recipients": listed("recipients") if its("recipients") else [],
            "mobiles": listed("mobiles") if its("mobiles") else [],
            "secret": its("secret"),
            "events": [e for e in get_args(NotifyEvent) if values.get(f"event_{e}") == "on"],
            "language": values.get("channel_language") or "en",
        }
    )


# The form's fields each kind of channel has.
FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("recipients",),
    "dingtalk": ("url", "secret", "mobiles"),
    "wecom": ("url", "secret"),
    "feishu": ("url", "secret"),
    "webhook": ("url", "secret"),
}


async def change_channels(
    api: Api, principal: Principal, service: str | None, environment: str, values: dict[str, str]
) -> None:
    """Add the form's channel to those in force (a service's own, else the environment's
    default), remove one, or (for a service) go back to the default."""
    if "channel_reset" in values and service is not None:
        await notification_service.reset(api, principal, service, environment)
    elif "channel_remove" in values:
        index = int(values["channel_remove"])
        await notification_service.remove(api, principal, service, environment, index)
    else:
        await notification_service.add(api, principal, service, environment, channel_of(values))
