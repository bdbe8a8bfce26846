"""Identifier types."""

from typing import NewType

ReleaseId = NewType("ReleaseId", str)
TemplateId = NewType("TemplateId", str)
