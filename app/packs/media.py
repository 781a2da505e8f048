"""A prompt's `media` section (schema `MediaConfig` and friends), modelled strictly.

Parley uses `enabled` / `supported_types` to decide which message parts a prompt accepts;
the per-type limits are kept for clients. Custom media types (keys beyond the well-known
ones) must match exactly one of the type configs, as the schema's `oneOf` demands.
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


def _validates(model: type[StrictModel], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


__all__ = [
    "AudioConfig",
    "ContentPart",
    "DocumentConfig",
    "GenericMediaTypeConfig",
    "ImageConfig",
    "MediaConfig",
    "MediaReference",
    "MultimodalExample",
    "VideoConfig",
]
