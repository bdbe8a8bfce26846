"""FastAPI dependencies: the connections made once in the app's lifespan."""

from typing import Annotated

from fastapi import Depends, Request

from shared.bus import Bus
from shared.cluster import Clusters
from shared.registry import Registries
from shared.settings import Settings
from shared.store.audit import Audit
from shared.store.catalog import Catalog
from shared.store.images import Images
from shared.store.releases import Releases
from shared.store.users import Users


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def _releases(request: Request) -> Releases:
    releases: Releases = request.app.state.releases
    return releases


def _bus(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


def _registries(request: Request) -> Registries:
    registries: Registries = request.app.state.registries
    return registries


def _images(request: Request) -> Images:
    images: Images = request.app.state.images
    return images


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _clusters(request: Request) -> Clusters:
    clusters: Clusters = request.app.state.clusters
    return clusters


def _users(request: Request) -> Users:
    users: Users = request.app.state.users
    return users


def _audit(request: Request) -> Audit:
    audit: Audit = request.app.state.audit
    return audit


CatalogDep = Annotated[Catalog, Depends(_catalog)]
ReleasesDep = Annotated[Releases, Depends(_releases)]
BusDep = Annotated[Bus, Depends(_bus)]
ClustersDep = Annotated[Clusters, Depends(_clusters)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RegistriesDep = Annotated[Registries, Depends(_registries)]
ImagesDep = Annotated[Images, Depends(_images)]
UsersDep = Annotated[Users, Depends(_users)]
AuditDep = Annotated[Audit, Depends(_audit)]
