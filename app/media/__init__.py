"""Media storage (DESIGN §13): the `MediaStore` seam, its filesystem backend, MIME
sniffing and image dimensions."""

from app.media.base import BlobInfo, BlobTooLarge, MediaStore, StagedBlob
from app.media.filesystem import FilesystemMediaStore

__all__ = ["BlobInfo", "BlobTooLarge", "FilesystemMediaStore", "MediaStore", "StagedBlob"]
