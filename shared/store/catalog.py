"""Environments, services, templates and release configs."""

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.ids import TemplateId
from shared.models import Environment, Service, ServiceConfig, Template
from shared.store.mongo import Doc, Mongo, decode_params, encode_params


def _strip(doc: Doc | None) -> Doc | None:
    if doc is not None:
        doc.pop("_id", None)
    return doc


def _config(doc: Doc | None) -> ServiceConfig:
    assert doc is not None
    return ServiceConfig.model_validate({**doc, "params": decode_params(doc["params"])})


class Catalog:
    def __init__(self, mongo: Mongo) -> None:
        self._environments = mongo.collection("environments")
        self._services = mongo.collection("services")
        # The current version of each template, and every version ever stored.
        self._templates = mongo.collection("templates")
        self._template_versions = mongo.collection("template_versions")
        self._configs = mongo.collection("service_configs")

    async def add_environment(self, env: Environment) -> None:
        try:
            await self._environments.insert_one({"_id": env.name, **env.model_dump()})
        except DuplicateKeyError as exc:
            raise Conflict(f"environment {env.name!r} already exists") from exc

    async def environment(self, name: str) -> Environment | None:
        doc = _strip(await self._environments.find_one({"_id": name}))
        return Environment.model_validate(doc) if doc else None

    async def environments(self) -> list[Environment]:
        cursor = self._environments.find({}).sort("_id", 1)
        return [Environment.model_validate(_strip(d)) async for d in cursor]

    async def add_service(self, service: Service) -> None:
        try:
            await self._services.insert_one({"_id": service.name, **service.model_dump()})
        except DuplicateKeyError as exc:
            raise Conflict(f"service {service.name!r} already exists") from exc

    async def service(self, name: str) -> Service | None:
        doc = _strip(await self._services.find_one({"_id": name}))
        return Service.model_validate(doc) if doc else None

    async def services(self) -> list[Service]:
        cursor = self._services.find({}).sort("_id", 1)
        return [Service.model_validate(_strip(d)) async for d in cursor]

    async def add_template(self, template: Template) -> None:
        doc = template.model_dump()
        try:
            await self._template_versions.insert_one(
                {"_id": f"{template.id}/{template.version}", **doc}
            )
        except DuplicateKeyError as exc:
            raise Conflict(
                f"template {template.id!r} version {template.version} already exists"
            ) from exc
        await self._templates.replace_one({"_id": template.id}, doc, upsert=True)

    async def template(
        self, template_id: TemplateId, version: int | None = None
    ) -> Template | None:
        """The template's current version, or the given one."""
        if version is None:
            doc = await self._templates.find_one({"_id": template_id})
        else:
            doc = await self._template_versions.find_one({"_id": f"{template_id}/{version}"})
        doc = _strip(doc)
        return Template.model_validate(doc) if doc else None

    async def put_config(self, config: ServiceConfig) -> ServiceConfig:
        """Store a new version of the config; returns it with its version number."""
        fields = config.model_dump(exclude={"version"})
        fields["params"] = encode_params(fields["params"])
        doc = await self._configs.find_one_and_update(
            {"_id": f"{config.service}/{config.environment}"},
            {"$set": fields, "$inc": {"version": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return _config(_strip(doc))

    async def config(self, service: str, environment: str) -> ServiceConfig | None:
        doc = _strip(await self._configs.find_one({"_id": f"{service}/{environment}"}))
        return _config(doc) if doc else None
