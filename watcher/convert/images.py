"""Images with Pillow (HEIC/HEIF through pillow-heif; AVIF, WebP, TIFF, GIF, BMP by Pillow).

The picture is turned upright by its EXIF orientation, keeps its size and colour profile,
and is written as JPEG, or PNG where it has transparency. A GIF (or any image with frames)
gives its first frame. Pillow's own guard against decompression bombs stays on.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from pathlib import Path
from typing import Any

from watcher.convert.ffmpeg import ConversionFailed, ConverterMissing
from watcher.convert.targets import JPEG

JPEG_QUALITY = 92


def pillow_module() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ConverterMissing(
            "no image converter: `pip install 'heygen-watcher[convert]'` (Pillow, pillow-heif)"
        ) from None
    return Image


def _heif(source_type: str) -> None:
    if "heic" not in source_type and "heif" not in source_type:
        return
    try:
        import pillow_heif
    except ImportError:
        raise ConverterMissing(
            "no HEIC/HEIF reader: `pip install 'heygen-watcher[convert]'` (pillow-heif)"
        ) from None
    pillow_heif.register_heif_opener()


def tool_version() -> str:
    versions = [f"Pillow {importlib.metadata.version('pillow')}"]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        versions.append(f"pillow-heif {importlib.metadata.version('pillow-heif')}")
    return ", ".join(versions)


def is_transparent(path: Path, source_type: str) -> bool:
    """Whether the image has an alpha channel (or a transparent palette entry)."""
    image_module = pillow_module()
    _heif(source_type)
    try:
        with image_module.open(path) as image:
            return bool(
                image.mode in ("RGBA", "LA", "PA", "RGBa", "La")
                or (image.mode == "P" and "transparency" in image.info)
            )
    except Exception as error:  # Pillow raises many kinds for a file it cannot read
        raise ConversionFailed(_reason(error, path)) from None


def convert_image(source: Path, source_type: str, target: Path, target_type: str) -> None:
    """Write ``source`` as ``target_type`` at ``target``: upright, same size."""
    image_module = pillow_module()
    _heif(source_type)
    from PIL import ImageOps

    try:
        with image_module.open(source) as image:
            image.seek(0)
            icc = image.info.get("icc_profile")
            upright = ImageOps.exif_transpose(image)
            if target_type == JPEG:
                if upright.mode not in ("RGB", "L"):
                    upright = upright.convert("RGB")
                upright.save(target, "JPEG", quality=JPEG_QUALITY, icc_profile=icc, optimize=True)
            else:
                if upright.mode not in ("RGBA", "RGB", "LA", "L"):
                    upright = upright.convert("RGBA")
                upright.save(target, "PNG", icc_profile=icc)
    except OSError as error:
        if isinstance(error, FileNotFoundError) or error.errno is not None:
            raise  # a local fault (the disk, a vanished file): retried, not refused
        raise ConversionFailed(_reason(error, source)) from None
    except Exception as error:
        raise ConversionFailed(_reason(error, source)) from None


def _reason(error: Exception, path: Path) -> str:
    """Pillow's complaint in one line, without the file's path (the sidecar names it)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = text.replace(f" '{path}'", "").replace(f" {path}", "").replace(str(path), "the file")
    return f"the image cannot be read: {text}"[:240]
