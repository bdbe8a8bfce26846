"""One error family: API errors carry an HTTP status; worker errors carry a retry policy."""

from typing import TypeVar

T = TypeVar("T")


class FabuError(Exception):
    status = 500

    def __init__(
        self, message: str, *, field: str = "", errors: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # The input the error is about (``version``, ``params.replicas``), as data:
        # a form shows the message next to that field, the JSON error names it.
        self.field = field
        # Each problem by its path, when there are several: a form shows each at its field.
        self.errors = errors or {}


class Unauthorized(FabuError):
    status = 401


class Forbidden(FabuError):
    status = 403


class NotFound(FabuError):
    status = 404


class Invalid(FabuError):
    status = 422


class Conflict(FabuError):
    status = 409


class Unavailable(FabuError):
    status = 503


class TransientError(FabuError):
    """Try again later: the worker naks the message with this delay."""

    def __init__(self, message: str, delay: float = 2.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(FabuError):
    """Retrying cannot help: the release fails with this message."""


def found(value: T | None, what: str) -> T:
    """``value``, or 404 naming ``what`` ("service 'web'") when there is none."""
    if value is None:
        raise NotFound(f"{what} not found")
    return value
