"""Images CI registered: what each registration said, folded into one record per digest.

Each registration (repository, digest, tag, source) is a document of its own,
inserted once: two registrations at the same moment (the NATS event and the
API call for one push, two tags of one digest) never race a write of a shared
document, on any server (some servers lose one of two concurrent updates of a
document). Reading folds them into an ``Image`` per repository and digest.
Records stored before, one document per digest holding its lists, fold the
same way.
"""

from contextlib import suppress

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from shared.messaging.messages import ImageBuilt
from shared.models.catalog import Image
from shared.store.mongo import Doc, Mongo

METADATA = ("service", "commit_sha", "pipeline_url", "pushed_at")


def _fold(docs: list[Doc]) -> list[Image]:
    """One image per digest from its registrations, oldest first: the first registration's
    metadata is kept, later ones fill only what is still empty; tags and sources in the
    order first seen. Newest image first."""
    images: dict[str, Image] = {}
    for doc in sorted(docs, key=lambda d: d["registered_at"]):
        seen = Image.model_validate({k: v for k, v in doc.items() if k != "_id"})
        image = images.setdefault(seen.digest, seen)
        if image is seen:
            continue
        for field in METADATA:
            if not getattr(image, field):
                setattr(image, field, getattr(seen, field))
        image.tags += [t for t in seen.tags if t not in image.tags]
        image.sources += [s for s in seen.sources if s not in image.sources]
    return sorted(images.values(), key=lambda i: i.registered_at, reverse=True)


async def ensure_indexes(mongo: Mongo) -> None:
    await mongo.collection("images").create_index(
        [("repository", ASCENDING), ("digest", ASCENDING)], name="by_repository"
    )


class Images:
    def __init__(self, mongo: Mongo) -> None:
        self._images = mongo.collection("images")

    async def register(self, built: ImageBuilt, source: str) -> Image:
        """Record that ``source`` registered this tag of this digest, and return the image.

        Idempotent: the same repository, digest, tag and source again inserts nothing.
        """
        registration = Image(
            repository=built.repository,
            digest=built.digest,
            service=built.service,
            tags=[built.tag],
            commit_sha=built.commit_sha,
            pipeline_url=built.pipeline_url,
            pushed_at=built.pushed_at,
            sources=[source],
        )
        key = f"{built.repository}@{built.digest}#{built.tag}#{source}"
        # Registered before: the same document, inserted once.
        with suppress(DuplicateKeyError):
            await self._images.insert_one({"_id": key, **registration.model_dump()})
        docs = self._images.find({"repository": built.repository, "digest": built.digest})
        (image,) = _fold([d async for d in docs])
        return image

    async def of(self, repository: str) -> list[Image]:
        """The repository's images, newest first."""
        return _fold([d async for d in self._images.find({"repository": repository})])
