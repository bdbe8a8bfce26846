"""FastAPI dependencies: the connections made once in the app's lifespan (``Api``), which
routes and pages hand to the service layer; who the caller is: ``services.api.access``."""

from typing import Annotated

from fastapi import Depends, Request

from services.api.context import Api


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


ApiDep = Annotated[Api, Depends(api_of)]
