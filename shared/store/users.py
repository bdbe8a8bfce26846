"""Users, their API tokens and their browser sessions.

Passwords are kept as argon2 hashes; tokens and session ids as SHA-256
hashes (they are random, so a fast hash is enough and lookups stay one
indexed equality). Neither is ever returned by the API.

Who a token or a session names is read on every request: those reads (a token,
a session, a user) are kept (``shared.store.kept``), and every write that
changes who may do what (a user updated, a token revoked, a session ended)
drops them in every process.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.models.base import now
from shared.models.users import ApiToken, User
from shared.store.kept import Kept
from shared.store.mongo import Doc, Mongo, new_id

TOKEN_PREFIX = "fabu_"  # noqa: S105 (a prefix that makes a leaked token recognisable)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user(doc: Doc) -> User:
    doc["name"] = doc.pop("_id")
    doc.pop("password_hash", None)
    return User.model_validate(doc)


def _token(doc: Doc) -> ApiToken:
    doc["id"] = doc.pop("_id")
    doc.pop("hash", None)
    return ApiToken.model_validate(doc)


async def ensure_indexes(mongo: Mongo) -> None:
    tokens = mongo.collection("api_tokens")
    await tokens.create_index("hash", unique=True, name="hash")
    await tokens.create_index("user", name="user")
    await mongo.collection("sessions").create_index("user", name="user")


class Session:
    def __init__(self, user: str, csrf: str, expires_at: datetime) -> None:
        self.user, self.csrf, self.expires_at = user, csrf, expires_at


class Users:
    def __init__(self, mongo: Mongo, kept: Kept | None = None) -> None:
        self._users = mongo.collection("users")
        self._tokens = mongo.collection("api_tokens")
        self._sessions = mongo.collection("sessions")
        self._kept = kept or Kept()

    async def any(self) -> bool:
        return await self._users.find_one({}, {"_id": 1}) is not None

    async def add(self, user: User, password_hash: str | None) -> None:
        doc = user.model_dump(exclude={"name"})
        doc["password_hash"] = password_hash
        try:
            await self._users.insert_one({"_id": user.name, **doc})
        except DuplicateKeyError as exc:
            raise Conflict(f"user {user.name!r} already exists") from exc
        await self._kept.changed()  # "no such user" may be kept

    async def get(self, name: str) -> User | None:
        async def read() -> User | None:
            doc = await self._users.find_one({"_id": name})
            return _user(doc) if doc else None

        return await self._kept.get(("user", name), read)

    async def all(self) -> list[User]:
        return [_user(d) async for d in self._users.find({}).sort("_id", 1)]

    async def password_hash(self, name: str) -> str | None:
        doc = await self._users.find_one({"_id": name})
        return doc.get("password_hash") if doc else None

    async def update(self, name: str, **fields: object) -> User | None:
        """Set fields (grants as models are stored as documents); None when there is no user."""
        values = {
            k: [g.model_dump() for g in v] if k == "grants" else v  # type: ignore[attr-defined]
            for k, v in fields.items()
        }
        doc = await self._users.find_one_and_update(
            {"_id": name}, {"$set": values}, return_document=ReturnDocument.AFTER
        )
        await self._kept.changed()
        return _user(doc) if doc else None

    # Tokens

    async def add_token(
        self, user: str, name: str, expires_at: datetime | None
    ) -> tuple[ApiToken, str]:
        """A new token: its record, and the secret, which exists only in this answer."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(id=new_id(), name=name, user=user, expires_at=expires_at)
        doc = token.model_dump(exclude={"id"})
        await self._tokens.insert_one({"_id": token.id, "hash": digest(secret), **doc})
        return token, secret

    async def token_by_secret(self, secret: str) -> ApiToken | None:
        hashed = digest(secret)

        async def read() -> ApiToken | None:
            doc = await self._tokens.find_one({"hash": hashed})
            return _token(doc) if doc else None

        return await self._kept.get(("token", hashed), read)

    async def token(self, token_id: str) -> ApiToken | None:
        doc = await self._tokens.find_one({"_id": token_id})
        return _token(doc) if doc else None

    async def tokens(self, user: str | None) -> list[ApiToken]:
        query = {"user": user} if user else {}
        tokens = [_token(d) async for d in self._tokens.find(query)]
        return sorted(tokens, key=lambda t: t.id, reverse=True)

    async def revoke_token(self, token_id: str) -> ApiToken | None:
        """Revoke a live token; None when it is unknown or already revoked."""
        doc = await self._tokens.find_one_and_update(
            {"_id": token_id, "revoked_at": None},
            {"$set": {"revoked_at": now()}},
            return_document=ReturnDocument.AFTER,
        )
        await self._kept.changed()
        return _token(doc) if doc else None

    async def used_token(self, token: ApiToken) -> None:
        """Note when a token was used (on the kept copy too: it is noted again only after
        the resolution its caller keeps)."""
        token.last_used_at = now()
        await self._tokens.update_one({"_id": token.id}, {"$set": {"last_used_at": now()}})

    # Sessions

    async def add_session(self, user: str, lifetime: timedelta) -> tuple[str, Session]:
        """A new session: the cookie's value (not stored) and the session with its CSRF token."""
        secret = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now() + lifetime)
        await self._sessions.insert_one(
            {
                "_id": digest(secret),
                "user": user,
                "csrf": session.csrf,
                "expires_at": session.expires_at,
            }
        )
        return secret, session

    async def session(self, secret: str) -> Session | None:
        hashed = digest(secret)

        async def read() -> Session | None:
            doc = await self._sessions.find_one({"_id": hashed})
            return None if doc is None else Session(doc["user"], doc["csrf"], doc["expires_at"])

        return await self._kept.get(("session", hashed), read)

    async def end_session(self, secret: str) -> None:
        await self._sessions.delete_one({"_id": digest(secret)})
        await self._kept.changed()

    async def end_sessions(self, user: str) -> None:
        await self._sessions.delete_many({"user": user})
        await self._kept.changed()
