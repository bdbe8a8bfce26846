"""FastAPI dependencies: the connections made once in the app's lifespan (``Api``)."""

from typing import Annotated

from fastapi import Depends, Request

from services.api.context import Api
from shared.messaging.bus import Bus
from shared.outside.registry import Registries
from shared.settings import Settings
from shared.store.catalog import Catalog
from shared.store.images import Images
from shared.store.users import Users


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


def _catalog(request: Request) -> Catalog:
    return api_of(request).catalog


def _bus(request: Request) -> Bus:
    return api_of(request).bus


def _registries(request: Request) -> Registries:
    return api_of(request).registries


def _images(request: Request) -> Images:
    return api_of(request).images


def _settings(request: Request) -> Settings:
    return api_of(request).settings


def _users(request: Request) -> Users:
    return api_of(request).users


ApiDep = Annotated[Api, Depends(api_of)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
BusDep = Annotated[Bus, Depends(_bus)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RegistriesDep = Annotated[Registries, Depends(_registries)]
ImagesDep = Annotated[Images, Depends(_images)]
UsersDep = Annotated[Users, Depends(_users)]
