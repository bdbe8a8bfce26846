"""FastAPI dependencies: the connections made once in the app's lifespan (``Api``)."""

from typing import Annotated

from fastapi import Depends, Request

from services.api.context import Api
from shared.bus import Bus
from shared.cluster import Clusters
from shared.registry import Registries
from shared.settings import Settings
from shared.store.audit import Audit
from shared.store.catalog import Catalog
from shared.store.images import Images
from shared.store.releases import Releases
from shared.store.users import Users


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


def _catalog(request: Request) -> Catalog:
    return api_of(request).catalog


def _releases(request: Request) -> Releases:
    return api_of(request).releases


def _bus(request: Request) -> Bus:
    return api_of(request).bus


def _registries(request: Request) -> Registries:
    return api_of(request).registries


def _images(request: Request) -> Images:
    return api_of(request).images


def _settings(request: Request) -> Settings:
    return api_of(request).settings


def _clusters(request: Request) -> Clusters:
    return api_of(request).clusters


def _users(request: Request) -> Users:
    return api_of(request).users


def _audit(request: Request) -> Audit:
    return api_of(request).audit


ApiDep = Annotated[Api, Depends(api_of)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
ReleasesDep = Annotated[Releases, Depends(_releases)]
BusDep = Annotated[Bus, Depends(_bus)]
ClustersDep = Annotated[Clusters, Depends(_clusters)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RegistriesDep = Annotated[Registries, Depends(_registries)]
ImagesDep = Annotated[Images, Depends(_images)]
UsersDep = Annotated[Users, Depends(_users)]
AuditDep = Annotated[Audit, Depends(_audit)]
