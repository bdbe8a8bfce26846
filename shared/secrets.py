"""Secrets at rest: sealed with Fernet (AES-128-CBC and HMAC-SHA256) under ``FABU_SECRET_KEY``.

Only sealed values reach the database; they are opened in memory where they
are used (the notifier), and read back through the API masked.
"""

from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken

from shared.errors import FabuError, Invalid


class Manifested(Protocol):
    """A release: its manifest as shown, and the one the cluster gets, sealed ("" if none)."""

    manifest: str
    sealed_manifest: str


PREFIX = "fernet:"
MASK = "••••••"


class SecretError(FabuError):
    """A stored secret cannot be opened: the key changed or the value was altered."""


class Secrets:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode()) if key else None

    def seal(self, plain: str) -> str:
        if not plain:
            return ""
        if self._fernet is None:
            raise Invalid("FABU_SECRET_KEY is not set, so Fabu cannot store secrets")
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        if not sealed:
            return ""
        if self._fernet is None or not sealed.startswith(PREFIX):
            raise SecretError("a stored secret cannot be opened (FABU_SECRET_KEY missing or wrong)")
        try:
            return self._fernet.decrypt(sealed.removeprefix(PREFIX).encode()).decode()
        except InvalidToken as exc:
            raise SecretError("a stored secret cannot be opened with FABU_SECRET_KEY") from exc

    def manifest(self, release: Manifested) -> str:
        """The manifest the cluster gets: opened when it holds secrets, else as shown."""
        return self.open(release.sealed_manifest) if release.sealed_manifest else release.manifest


def new_key() -> str:
    return Fernet.generate_key().decode()
