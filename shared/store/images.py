"""Images CI registered: one document per repository and digest."""

from pymongo import DESCENDING

from shared.messages import ImageBuilt
from shared.models import Image
from shared.store.mongo import Doc, Mongo


def _image(doc: Doc) -> Image:
    doc.pop("_id")
    return Image.model_validate(doc)


class Images:
    def __init__(self, mongo: Mongo) -> None:
        self._images = mongo.collection("images")

    async def register(self, built: ImageBuilt, source: str) -> Image:
        """Store the image CI built, or add the tag and source to the record of its digest.

        Idempotent: the same digest and tag again changes nothing. The first
        registration's metadata (commit, pipeline, push time) is kept; later
        ones fill only what is still empty.
        """
        image = Image(
            repository=built.repository,
            digest=built.digest,
            service=built.service,
            commit_sha=built.commit_sha,
            pipeline_url=built.pipeline_url,
            pushed_at=built.pushed_at,
        )
        tag = built.tag
        key = f"{image.repository}@{image.digest}"
        current = await self._images.find_one({"_id": key})
        if current is None:
            fields = image.model_dump()
            fields.update(tags=[tag], sources=[source])
            await self._images.update_one({"_id": key}, {"$setOnInsert": fields}, upsert=True)
        fill = {
            field: value
            for field, value in image.model_dump(
                include={"service", "commit_sha", "pipeline_url", "pushed_at"}
            ).items()
            if value and not (current or {}).get(field)
        }
        update: Doc = {"$addToSet": {"tags": tag, "sources": source}}
        if fill and current is not None:
            update["$set"] = fill
        await self._images.update_one({"_id": key}, update)
        stored = await self._images.find_one({"_id": key})
        assert stored is not None  # noqa: S101 - narrows the type: written just above
        return _image(stored)

    async def of(self, repository: str) -> list[Image]:
        cursor = self._images.find({"repository": repository}).sort("registered_at", DESCENDING)
        return [_image(d) async for d in cursor]
