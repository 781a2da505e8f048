"""Building blocks that make pydantic validate a PromptPack the way JSON Schema does.

The models are validated from already-decoded JSON, and the official schema (draft 2020-12)
is the reference, so pydantic's conveniences that JSON Schema lacks are switched off:

- `strict=True`: no coercion (`"1"` is not a number, `1` is not a boolean, `true` is not 1);
- `JsonInt`: JSON Schema's `integer` also accepts a number with a zero fraction (`2.0`);
- `Omittable[T]`: an optional property may be absent, but an explicit `null` is rejected,
  because the schema's `"type": "string"` does not admit `null`;
- patterns use Python's `re` written with ECMA-262 meaning (`[0-9]`, `\\Z`), see `semver`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

T = TypeVar("T")


def _reject_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null (omit the field instead)")
    return value


def _integral_float_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Omittable = Annotated[T | None, BeforeValidator(_reject_null)]
"""An optional property: absent means `None`, explicit `null` is an error."""

JsonInt = Annotated[int, BeforeValidator(_integral_float_to_int)]
PositiveInt = Annotated[JsonInt, Field(ge=1)]
NonNegativeInt = Annotated[JsonInt, Field(ge=0)]
NonNegativeNumber = Annotated[float, Field(ge=0)]
NonEmptyStr = Annotated[str, Field(min_length=1)]

PACK_ID_PATTERN = r"^[a-z][a-z0-9-]*\Z"
PROMPT_ID_PATTERN = r"^[a-z][a-z0-9_-]*\Z"
IDENTIFIER_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*\Z"
MEDIA_TYPE_PATTERN = r"^[a-z0-9_]+\Z"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
MediaTypeName = Annotated[str, Field(pattern=MEDIA_TYPE_PATTERN)]


class StrictModel(BaseModel):
    """An object with `additionalProperties: false`. Immutable: packs are shared by requests."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, regex_engine="python-re")


class OpenModel(StrictModel):
    """An object whose schema allows properties beyond the ones it types (kept verbatim)."""

    model_config = ConfigDict(extra="allow")


def nested_errors(
    title: str, items: list[tuple[tuple[str | int, ...], str, Any]]
) -> ValidationError:
    """A ValidationError to raise from a validator; pydantic re-roots each `loc` at the object.

    Used where a JSON Schema rule (`oneOf`, `if`/`then`) is not expressible as a field type,
    so the error still points at the offending property instead of at the whole object.
    """
    details = [
        InitErrorDetails(type=PydanticCustomError("promptpack", msg), loc=loc, input=value)
        for loc, msg, value in items
    ]
    return ValidationError.from_exception_data(title, details)
