"""The base of the models the API sends."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DomainModel(BaseModel):
    """A model whose every field is present in what the API sends (defaults included), so
    its response schema marks every field required and a generated client reads `str`,
    not `str | Unset`. As a request body, fields with defaults stay optional."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)
