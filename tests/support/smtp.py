"""A real SMTP server (aiosmtpd) that keeps what it receives, owned by the tests."""

from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from devstack.stack import free_port


class Inbox:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Message] = []
        # Recipients whose next messages get a transient refusal (451), with how many.
        self.refuse: dict[str, int] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for recipient in envelope.rcpt_tos:
            if self.refuse.get(recipient, 0) > 0:
                self.refuse[recipient] -= 1
                return "451 4.3.0 Try again later"
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def about(self, release_id: str) -> list[Message]:
        return [m for m in self.messages if release_id in str(m.get("Message-ID", ""))]


def start_smtp() -> tuple[Controller, Inbox]:
    inbox = Inbox(free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    return controller, inbox
