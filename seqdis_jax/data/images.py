"""Image pieces the dataset converters share (PIL + numpy): reading a file with one clear
error, the central square crop, and the antialiased resize to the models' frame size."""

from __future__ import annotations

from PIL import Image

Box = tuple[int, int, int, int]  # (left, top, right, bottom), PIL's crop box


def read_image(path: str, mode: str, what: str = "image") -> Image.Image:
    """The image at ``path`` decoded in PIL ``mode`` ("RGB", "RGBA", ...); a ValueError naming
    the file (``cannot read <what> <path>``) when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except OSError as e:  # PIL.UnidentifiedImageError and truncated files
        raise ValueError(f"cannot read {what} {path}: {e}") from e


def center_square(size: tuple[int, int], fraction: float = 1.0) -> Box:
    """The central square of side ``round(fraction * min(W, H))`` of a (W, H) image."""
    width, height = size
    side = max(1, round(fraction * min(width, height)))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize(image: Image.Image, size: int) -> Image.Image:
    """``size`` x ``size`` with PIL's Lanczos filter, whose support widens with the scale
    factor: antialiased when downsampling (no aliasing of fine texture)."""
    return image.resize((size, size), Image.Resampling.LANCZOS)
