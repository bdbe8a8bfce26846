"""Release records made directly, for tests that store or judge them without a release."""

from typing import Any

from shared.ids import ReleaseId, TemplateId
from shared.models.catalog import BaseParams
from shared.models.release import Release
from shared.store.mongo import new_id


def record(service: str = "web", environment: str = "test", **fields: Any) -> Release:
    """A release record with what every one needs; ``fields`` set the rest."""
    return Release(
        id=ReleaseId(new_id()),
        service=service,
        environment=environment,
        version="1.0.0",
        image=f"registry.example/{service}:1.0.0",
        template_id=TemplateId("t"),
        config_version=1,
        params=BaseParams(),
        namespace="ns",
        **fields,
    )
