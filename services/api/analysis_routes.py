"""Analysis templates: the Prometheus checks canary steps and blue-green previews name."""

from fastapi import APIRouter

from services.api import analysis_service
from services.api.access import ConfigAdmin, Viewer
from services.api.deps import ApiDep
from services.api.schemas import AnalysisTemplateChange, AnalysisTemplateIn, AnalysisTemplateView
from shared.models.analysis import AnalysisTemplate

router = APIRouter()


@router.get("/analysis-templates")
async def list_analysis_templates(api: ApiDep, me: Viewer) -> list[AnalysisTemplateView]:
    """In name order, each with the release configs that name it (``used_by``)."""
    return await analysis_service.templates(api, me)


@router.get("/analysis-templates/{name}")
async def get_analysis_template(name: str, api: ApiDep, me: Viewer) -> AnalysisTemplateView:
    return await analysis_service.template(api, me, name)


@router.post("/analysis-templates", status_code=201)
async def create_analysis_template(
    body: AnalysisTemplateIn, api: ApiDep, editor: ConfigAdmin
) -> AnalysisTemplate:
    """A new template, version 1 (409 when the name is taken)."""
    return await analysis_service.create(api, editor, body)


@router.put("/analysis-templates/{name}")
async def change_analysis_template(
    name: str, body: AnalysisTemplateChange, api: ApiDep, editor: ConfigAdmin
) -> AnalysisTemplate:
    """The next version, over the ``version`` read: 409 when another change came first."""
    return await analysis_service.change(api, editor, name, body)


@router.delete("/analysis-templates/{name}")
async def delete_analysis_template(name: str, api: ApiDep, editor: ConfigAdmin) -> AnalysisTemplate:
    """Delete it (the template as it was): 409 naming the release configs that name it."""
    return await analysis_service.delete(api, editor, name)
