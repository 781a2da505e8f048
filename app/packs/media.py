"""A prompt's `media` section (schema `MediaConfig` and friends), modelled strictly.

Parley enforces `enabled`, `supported_types`, per type `max_size_mb` and
`allowed_formats`, for images `max_images_per_msg`, `require_caption` and `default_detail`
(`app/manager/media_rules.py`, `app/manager/media.py`). The fields in `UNENFORCED` are
accepted (refusing them would reject valid packs) but not applied; `unenforced_fields`
finds them so loading a pack that uses one logs a warning (`pack_warnings`). Custom media
types (keys beyond the well-known ones) must match exactly one of the type configs, as
the schema's `oneOf` demands; message parts cannot have such a type, so their configs are
never applied either.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from app.packs.fields import (
    MediaTypeName,
    Omittable,
    OpenModel,
    PositiveInt,
    StrictModel,
    nested_errors,
)

ImageFormat = Literal["jpeg", "jpg", "png", "webp", "gif", "bmp"]
AudioFormat = Literal["mp3", "wav", "opus", "flac", "m4a", "aac", "ogg"]
VideoFormat = Literal["mp4", "webm", "mov", "avi", "mkv"]
Detail = Literal["low", "high", "auto"]


class ImageConfig(StrictModel):
    max_size_mb: Omittable[PositiveInt] = None
    allowed_formats: Omittable[list[ImageFormat]] = None
    default_detail: Omittable[Detail] = None
    require_caption: Omittable[bool] = None
    max_images_per_msg: Omittable[PositiveInt] = None


class AudioConfig(StrictModel):
    max_size_mb: Omittable[PositiveInt] = None
    allowed_formats: Omittable[list[AudioFormat]] = None
    max_duration_sec: Omittable[PositiveInt] = None
    require_metadata: Omittable[bool] = None


class VideoConfig(StrictModel):
    max_size_mb: Omittable[PositiveInt] = None
    allowed_formats: Omittable[list[VideoFormat]] = None
    max_duration_sec: Omittable[PositiveInt] = None
    require_metadata: Omittable[bool] = None


class DocumentConfig(StrictModel):
    max_size_mb: Omittable[PositiveInt] = None
    allowed_formats: Omittable[list[str]] = None
    max_pages: Omittable[PositiveInt] = None
    require_metadata: Omittable[bool] = None
    extraction_mode: Omittable[Literal["text", "structured", "raw"]] = None


class GenericMediaTypeConfig(OpenModel):
    max_size_mb: Omittable[PositiveInt] = None
    allowed_formats: Omittable[list[str]] = None
    require_metadata: Omittable[bool] = None
    validation_params: Omittable[dict[str, Any]] = None


class MediaReference(StrictModel):
    file_path: Omittable[str] = None
    url: Omittable[str] = None
    base64: Omittable[str] = None
    mime_type: str
    detail: Omittable[Detail] = None
    caption: Omittable[str] = None


class ContentPart(StrictModel):
    type: MediaTypeName
    text: Omittable[str] = None
    media: Omittable[MediaReference] = None


class MultimodalExample(StrictModel):
    name: str
    description: Omittable[str] = None
    role: Literal["user", "assistant", "system"]
    parts: list[ContentPart] = Field(min_length=1)


_CUSTOM_TYPE_CONFIGS: tuple[type[StrictModel], ...] = (
    ImageConfig,
    AudioConfig,
    VideoConfig,
    DocumentConfig,
    GenericMediaTypeConfig,
)


class MediaConfig(OpenModel):
    """Extra keys are custom media type configs (`model3d: {...}`), checked by `oneOf`."""

    enabled: bool
    supported_types: Omittable[list[MediaTypeName]] = None
    image: Omittable[ImageConfig] = None
    audio: Omittable[AudioConfig] = None
    video: Omittable[VideoConfig] = None
    document: Omittable[DocumentConfig] = None
    examples: Omittable[list[MultimodalExample]] = None

    @model_validator(mode="after")
    def _custom_types_match_one_config(self) -> MediaConfig:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        for key, value in (self.model_extra or {}).items():
            matches = sum(1 for model in _CUSTOM_TYPE_CONFIGS if _validates(model, value))
            if matches != 1:
                problems.append(
                    (
                        (key,),
                        "custom media type config must match exactly one of ImageConfig, "
                        f"AudioConfig, VideoConfig, DocumentConfig, GenericMediaTypeConfig "
                        f"(matches {matches})",
                        value,
                    )
                )
        if problems:
            raise nested_errors("MediaConfig", problems)
        return self


# Fields of the per-type configs that Parley accepts but does not apply, and why.
UNENFORCED: dict[str, dict[str, str]] = {
    "audio": {
        "max_duration_sec": "the duration of audio is not measured",
        "require_metadata": "media metadata is not required of clients",
    },
    "video": {
        "max_duration_sec": "the duration of video is not measured",
        "require_metadata": "media metadata is not required of clients",
    },
    "document": {
        "max_pages": "the pages of documents are not counted",
        "require_metadata": "media metadata is not required of clients",
        "extraction_mode": "documents are sent to the provider as they are",
    },
}


def unenforced_fields(config: MediaConfig) -> list[tuple[list[str], str]]:
    """(location inside `media`, reason) of every set field Parley does not apply."""
    found: list[tuple[list[str], str]] = []
    for kind, fields in UNENFORCED.items():
        section = getattr(config, kind)
        for name, why in fields.items():
            if section is not None and getattr(section, name) is not None:
                found.append(([kind, name], f"{kind}.{name} is not enforced: {why}"))
    for key in config.model_extra or {}:
        found.append(([key], f"custom media type {key!r} is not enforced: parts cannot have it"))
    return found


def _validates(model: type[StrictModel], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


__all__ = [
    "UNENFORCED",
    "AudioConfig",
    "ContentPart",
    "DocumentConfig",
    "GenericMediaTypeConfig",
    "ImageConfig",
    "MediaConfig",
    "MediaReference",
    "MultimodalExample",
    "VideoConfig",
    "unenforced_fields",
]
