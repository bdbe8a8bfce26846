"""Password hashing (argon2), off the event loop."""

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

hasher = PasswordHasher()
# Verified against when the user is unknown, so both answers take as long.
_NO_USER_HASH = hasher.hash("no such user")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hasher.hash, password)


async def password_matches(stored: str | None, password: str) -> bool:
    try:
        return await asyncio.to_thread(hasher.verify, stored or _NO_USER_HASH, password) and bool(
            stored
        )
    except (VerificationError, InvalidHashError):
        return False
