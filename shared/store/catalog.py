"""Environments, services, templates and release configs."""

import json

from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.ids import TemplateId
from shared.models.analysis import AnalysisTemplate
from shared.models.base import now
from shared.models.catalog import Environment, Service, ServiceConfig, Template
from shared.models.notifications import Channel
from shared.store.kept import Kept
from shared.store.mongo import Doc, Mongo, decode_params, encode_params


def _strip(doc: Doc | None) -> Doc | None:
    if doc is not None:
        doc.pop("_id", None)
    return doc


def _template(doc: Doc) -> Template:
    """A stored template: its schema is kept as JSON text (``$ref``, ``$defs`` and
    dotted names are not field names every server takes)."""
    parameters = doc.get("parameters")
    if isinstance(parameters, str):
        doc = {**doc, "parameters": json.loads(parameters)}
    return Template.model_validate(doc)


def _template_doc(template: Template) -> Doc:
    doc = template.model_dump()
    if template.parameters is not None:
        doc["parameters"] = json.dumps(template.parameters, ensure_ascii=False)
    return doc


def _config(doc: Doc | None) -> ServiceConfig:
    assert doc is not None  # noqa: S101 - narrows the type: callers pass a found document
    return ServiceConfig.model_validate({**doc, "params": decode_params(doc["params"])})


# Template versions each process keeps in memory once read (a few hundred KB at most).
VERSIONS_KEPT = 256


async def ensure_indexes(mongo: Mongo) -> None:
    await mongo.collection("services").create_index("name", unique=True, name="name")
    await mongo.collection("environments").create_index("name", unique=True, name="name")


class Catalog:
    def __init__(self, mongo: Mongo, kept: Kept | None = None) -> None:
        # Environments, services, current configs and channels read lately (``kept``).
        self._kept = kept or Kept()
        self._environments = mongo.collection("environments")
        self._services = mongo.collection("services")
        # The current version of each template, and every version ever stored.
        self._templates = mongo.collection("templates")
        self._template_versions = mongo.collection("template_versions")
        # The current config of each service and environment, and every version.
        self._configs = mongo.collection("service_configs")
        # Notification channels per service and environment ("*/<env>": the default).
        self._channels = mongo.collection("notification_channels")
        self._config_versions = mongo.collection("service_config_versions")
        # Analysis templates by name (each release keeps a copy of those it used).
        self._analyses = mongo.collection("analysis_templates")
        # Template versions read so far, by "<id>/<version>": a stored version never
        # changes, so each is read once per process (the newest VERSIONS_KEPT kept).
        self._versions: dict[str, Template] = {}

    async def add_environment(self, env: Environment) -> None:
        try:
            await self._environments.insert_one({"_id": env.name, **env.model_dump()})
        except DuplicateKeyError as exc:
            raise Conflict(f"environment {env.name!r} already exists") from exc
        await self._kept.changed()

    async def environment(self, name: str) -> Environment | None:
        async def read() -> Environment | None:
            doc = _strip(await self._environments.find_one({"_id": name}))
            return Environment.model_validate(doc) if doc else None

        env = await self._kept.get(("environment", name), read)
        return env.model_copy(deep=True) if env else None

    async def replace_environment(self, env: Environment) -> Environment | None:
        """Store ``env`` over the one of its name; the one before, or None if there was none."""
        before = _strip(
            await self._environments.find_one_and_replace(
                {"_id": env.name}, {"_id": env.name, **env.model_dump()}
            )
        )
        await self._kept.changed()
        return Environment.model_validate(before) if before else None

    async def environments(self, archived: bool = False) -> list[Environment]:
        """In name order; the archived ones only when asked for."""
        query: Doc = {} if archived else {"archived_at": None}
        cursor = self._environments.find(query).sort("_id", 1)
        return [Environment.model_validate(_strip(d)) async for d in cursor]

    async def add_service(self, service: Service) -> None:
        try:
            await self._services.insert_one({"_id": service.name, **service.model_dump()})
        except DuplicateKeyError as exc:
            raise Conflict(f"service {service.name!r} already exists") from exc
        await self._kept.changed()

    async def service(self, name: str) -> Service | None:
        async def read() -> Service | None:
            doc = _strip(await self._services.find_one({"_id": name}))
            return Service.model_validate(doc) if doc else None

        service = await self._kept.get(("service", name), read)
        return service.model_copy(deep=True) if service else None

    async def replace_service(self, service: Service) -> Service | None:
        """Store ``service`` over the one of its name; the one before, or None if there was none."""
        before = _strip(
            await self._services.find_one_and_replace(
                {"_id": service.name}, {"_id": service.name, **service.model_dump()}
            )
        )
        await self._kept.changed()
        return Service.model_validate(before) if before else None

    async def services(self, archived: bool = False) -> list[Service]:
        """In name order; the archived ones only when asked for."""
        query: Doc = {} if archived else {"archived_at": None}
        cursor = self._services.find(query).sort("_id", 1)
        return [Service.model_validate(_strip(d)) async for d in cursor]

    async def add_template(self, template: Template) -> None:
        """Store a new template (version 1) or a new version of one.

        The version document is written first under a unique key, so two
        writers of the same version cannot both succeed (409).
        """
        doc = _template_doc(template)
        try:
            await self._template_versions.insert_one(
                {"_id": f"{template.id}/{template.version}", **doc}
            )
        except DuplicateKeyError as exc:
            raise Conflict(
                f"template {template.id!r} version {template.version} already exists"
            ) from exc
        await self._templates.replace_one({"_id": template.id}, doc, upsert=True)
        await self._kept.changed()

    async def template(
        self, template_id: TemplateId, version: int | None = None
    ) -> Template | None:
        """The template's current version, or the given one."""
        if version is None:

            async def read() -> Template | None:
                doc = _strip(await self._templates.find_one({"_id": template_id}))
                return _template(doc) if doc else None

            current = await self._kept.get(("template", template_id), read)
            return current.model_copy(deep=True) if current else None
        key = f"{template_id}/{version}"
        if key not in self._versions:
            doc = _strip(await self._template_versions.find_one({"_id": key}))
            if doc is None:
                return None
            if len(self._versions) >= VERSIONS_KEPT:
                del self._versions[next(iter(self._versions))]
            self._versions[key] = _template(doc)
        return self._versions[key].model_copy(deep=True)

    async def templates(self) -> list[Template]:
        cursor = self._templates.find({}).sort("_id", 1)
        return [_template(d) async for d in cursor if _strip(d) is not None]

    async def template_versions(self, template_id: TemplateId) -> list[Template]:
        """Every version, newest first."""
        cursor = self._template_versions.find({"id": template_id})
        versions = [_template(d) async for d in cursor if _strip(d) is not None]
        return sorted(versions, key=lambda t: t.version, reverse=True)

    async def mark_template(self, template_id: TemplateId, **fields: object) -> None:
        """Record a sync that changed nothing (``synced_at``) or failed (``error``)."""
        await self._templates.update_one({"_id": template_id}, {"$set": fields})
        await self._kept.changed()

    async def put_config(self, config: ServiceConfig) -> ServiceConfig:
        """Store ``config`` as the next version; 409 when another save took that number."""
        key = f"{config.service}/{config.environment}"
        # Read afresh (not kept): the next number is the stored one's.
        current = _strip(await self._configs.find_one({"_id": key}))
        stored = config.model_copy(update={"version": current["version"] + 1 if current else 1})
        fields = stored.model_dump()
        fields["params"] = encode_params(fields["params"])
        try:
            await self._config_versions.insert_one({"_id": f"{key}/{stored.version}", **fields})
        except DuplicateKeyError as exc:
            raise Conflict(
                f"the config of {config.service} in {config.environment} was changed meanwhile; "
                "read it again"
            ) from exc
        await self._configs.replace_one({"_id": key}, fields, upsert=True)
        await self._kept.changed()
        return stored

    async def config(
        self, service: str, environment: str, version: int | None = None
    ) -> ServiceConfig | None:
        """The current config, or the given version."""
        key = f"{service}/{environment}"

        async def read() -> ServiceConfig | None:
            if version is None:
                doc = await self._configs.find_one({"_id": key})
            else:
                doc = await self._config_versions.find_one({"_id": f"{key}/{version}"})
            doc = _strip(doc)
            return _config(doc) if doc else None

        config = await self._kept.get(("config", key, version), read)
        return config.model_copy(deep=True) if config else None

    async def config_versions(self, service: str, environment: str) -> list[ServiceConfig]:
        """Every version, newest first."""
        cursor = self._config_versions.find({"service": service, "environment": environment})
        versions = [_config(_strip(d)) async for d in cursor]
        return sorted(versions, key=lambda c: c.version, reverse=True)

    async def configs_using(self, template_id: TemplateId) -> list[ServiceConfig]:
        """The current configs that name a template: the services a change to it reaches."""
        cursor = self._configs.find({"template_id": template_id})
        configs = [_config(_strip(d)) async for d in cursor]
        return sorted(configs, key=lambda c: (c.service, c.environment))

    async def configs(self) -> list[ServiceConfig]:
        """Every current config, by service and environment."""
        configs = [_config(_strip(d)) async for d in self._configs.find({})]
        return sorted(configs, key=lambda c: (c.service, c.environment))

    async def put_channels(self, service: str, environment: str, channels: list[Channel]) -> None:
        """Store the channels (secrets already sealed); ``service`` "*" sets the default."""
        await self._channels.replace_one(
            {"_id": f"{service}/{environment}"},
            {"channels": [c.model_dump() for c in channels], "updated_at": now()},
            upsert=True,
        )
        await self._kept.changed()

    async def channels(self, service: str, environment: str) -> list[Channel] | None:
        """The channels set for the service there, else the environment's default, else None."""
        keys = [f"{service}/{environment}", f"*/{environment}"]

        async def read() -> list[Channel] | None:
            found = {d["_id"]: d async for d in self._channels.find({"_id": {"$in": keys}})}
            for key in keys:  # one read for both
                if key in found:
                    return [Channel.model_validate(c) for c in found[key]["channels"]]
            return None

        channels = await self._kept.get(("channels", service, environment), read)
        return None if channels is None else [c.model_copy(deep=True) for c in channels]

    async def own_channels(self, service: str, environment: str) -> bool:
        """Whether the service sets its own channels there (else the default applies)."""
        doc = await self._channels.find_one({"_id": f"{service}/{environment}"}, {"_id": 1})
        return doc is not None

    async def drop_channels(self, service: str, environment: str) -> list[Channel] | None:
        """Forget the service's own channels there; the ones it had, if any."""
        doc = await self._channels.find_one_and_delete({"_id": f"{service}/{environment}"})
        await self._kept.changed()
        return [Channel.model_validate(c) for c in doc["channels"]] if doc else None

    async def add_analysis(self, template: AnalysisTemplate) -> None:
        try:
            await self._analyses.insert_one({"_id": template.name, **template.model_dump()})
        except DuplicateKeyError as exc:
            raise Conflict(f"analysis template {template.name!r} already exists") from exc

    async def analysis(self, name: str) -> AnalysisTemplate | None:
        doc = _strip(await self._analyses.find_one({"_id": name}))
        return AnalysisTemplate.model_validate(doc) if doc else None

    async def analyses(self, names: list[str] | None = None) -> list[AnalysisTemplate]:
        """In name order: all, or those of ``names`` that exist."""
        query: Doc = {} if names is None else {"_id": {"$in": names}}
        cursor = self._analyses.find(query).sort("_id", 1)
        return [AnalysisTemplate.model_validate(_strip(d)) async for d in cursor]

    async def replace_analysis(self, template: AnalysisTemplate) -> bool:
        """Store ``template`` over the one of its name whose version is one less; False
        when that one is gone or another change came first."""
        done = await self._analyses.replace_one(
            {"_id": template.name, "version": template.version - 1},
            {"_id": template.name, **template.model_dump()},
        )
        return done.matched_count == 1

    async def delete_analysis(self, name: str) -> bool:
        return (await self._analyses.delete_one({"_id": name})).deleted_count == 1
