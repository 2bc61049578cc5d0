"""The one image reader every part of imgclf uses: any real-world file in, an RGB picture out."""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

# Transparent pixels become white, the background most photos of objects are shown on.
BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")

# Pillow warns (rather than fails) about minor defects such as odd EXIF blocks or palette
# transparency; the picture is fine, and one warning per file would bury real messages.
# A module-level filter, not catch_warnings(): that one is not thread-safe, and images are
# read from worker threads.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
# load_image refuses (or, for JPEG, shrinks while decoding) pictures over MAX_PIXELS itself,
# with a message that says so: Pillow's own warning about them would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# The most pixels decoded at full size: Pillow's warning limit, about 89 megapixels (268 MB
# as RGB). A larger JPEG is decoded at 1/2, 1/4 or 1/8 scale (fast, and no network needs more);
# a larger picture of another format is refused.
MAX_PIXELS = 89_478_485
# ... in place of Pillow's own guard, which refuses any picture over twice its limit as the file
# opens, before a large JPEG can be set to decode at reduced scale (phones take 200-megapixel
# photos). Process-wide: imgclf reads every picture through load_image.
Image.MAX_IMAGE_PIXELS = None
# Fewer pixels a side than this hold nothing to classify (a 1x1 web beacon, say): refused.
MIN_SIDE = 8
# Files larger than this are refused before a byte is read: a picture of MAX_PIXELS is 268 MB
# even as uncompressed RGB, so anything past twice that is no picture imgclf can use (a disk
# image or a video named .jpg, say), and reading it whole would only fill the memory.
MAX_FILE_BYTES = 512 * 1024 * 1024

# Magic bytes of common formats, to tell a damaged image from a file that never was one.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89png", "PNG"), (b"gif8", "GIF"), (b"bm", "BMP"),
    (b"ii*\x00", "TIFF"), (b"mm\x00*", "TIFF"), (b"riff", "WebP"),
)


def load_image(source: ImageSource, *, max_side: int | None = None,
               least: Callable[[int, int], tuple[int, int]] | None = None) -> Image.Image:
    """Read an image file or bytes and return it as an upright RGB picture.

    EXIF orientation is applied; L, LA, P, RGBA, CMYK, 16-bit and float images are
    converted to 8-bit RGB (transparent areas on white); animated images give their
    first frame. Pillow's decompression-bomb guard stays on.

    Args:
        source: a path, raw bytes, or an open binary file.
        max_side: if given, shrink the picture so its longer side is at most this many
            pixels (JPEGs are then decoded at reduced size, which is much faster).
        least: (width, height) of the file -> the size the picture is needed at, at least
            (``Square.decode_size``): a JPEG at least twice that is decoded at 1/2, 1/4 or
            1/8 scale (its DCT scaled, far faster than decoding it whole), never below it.

    Raises:
        ImageError: the file is missing, empty, not an image, corrupt, truncated, smaller
            than MIN_SIDE a side or (other than a JPEG) over MAX_PIXELS; the message names
            the file and the reason.

    Example:
        >>> picture = load_image("photos/ant.jpg")
        >>> picture.mode
        'RGB'
    """
    name, stream = _open_source(source)
    try:
        with Image.open(stream) as opened:
            opened.seek(0)  # first frame of an animated GIF, WebP or APNG
            problem = _size_problem(opened, max_side, least)
            if problem:
                raise ImageError(name, problem)
            opened.load()
            picture = _upright(opened)
            picture = to_rgb(picture)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:  # over twice MAX_PIXELS, said at open
        raise ImageError(name, f"too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ImageError(name, _not_an_image_reason(stream)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        message = str(error) or type(error).__name__
        kind = "truncated image" if "truncated" in message.lower() else "corrupt image"
        raise ImageError(name, f"{kind} ({message})") from None
    finally:
        if stream is not source:  # close only what we opened
            stream.close()
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return picture


def _size_problem(opened: Image.Image, max_side: int | None,
                  least: Callable[[int, int], tuple[int, int]] | None = None) -> str | None:
    """Set a JPEG to decode at reduced scale where that is enough (for max_side or least, or
    to stay under MAX_PIXELS); say why a picture too small or too large is refused undecoded."""
    width, height = opened.size
    if min(width, height) < MIN_SIDE:
        return (f"too small to classify: {width}x{height} pixels (at least {MIN_SIDE} a side "
                "needed)")
    if opened.format in ("JPEG", "MPO"):  # MPO: a phone's JPEG with extra pictures inside
        scale = 1
        while (width // scale) * (height // scale) > MAX_PIXELS and scale < 8:
            scale *= 2
        request = (width // scale, height // scale)
        if max_side is not None:
            request = (min(request[0], max_side), min(request[1], max_side))
        if least is not None:
            need = least(width, height)
            request = (min(request[0], need[0]), min(request[1], need[1]))
        if request != (width, height):
            opened.draft("RGB", request)
    pixels = opened.size[0] * opened.size[1]
    if pixels <= MAX_PIXELS:
        return None
    return (f"too large: {width}x{height} is {pixels / 1e6:.0f} megapixels (imgclf reads up "
            f"to {MAX_PIXELS / 1e6:.0f}); shrink it first")


def to_rgb(picture: Image.Image) -> Image.Image:
    """Convert a picture of any Pillow mode to 8-bit RGB.

    Transparent pixels are composited on white; 16-bit and 32-bit grey levels are scaled
    down to 8 bits instead of being clipped (which would turn most of the image white).
    """
    mode = picture.mode
    if mode == "RGB":
        return picture
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_grey_to_uint8(picture, mode), "L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in picture.info or picture.palette.mode == "RGBA"
        picture = picture.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        picture = picture.convert("RGBA")
    if picture.mode == "RGBA":
        background = Image.new("RGB", picture.size, BACKGROUND)
        background.paste(picture, mask=picture.getchannel("A"))
        return background
    return picture.convert("RGB")


def _grey_to_uint8(picture: Image.Image, mode: str) -> np.ndarray:
    values = np.asarray(picture).astype(np.float64)
    if mode in _SIXTEEN_BIT_MODES:
        values = values / 257.0
    elif mode == "F" and values.size and values.max() <= 1.0:
        values = values * 255.0  # float images usually hold 0..1
    elif values.size and values.max() > 255:
        # 32-bit integer mode: Pillow opens many 16-bit PNGs this way.
        values = values * (255.0 / (65535.0 if values.max() <= 65535 else values.max()))
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _upright(picture: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a damaged EXIF block leaves the picture as stored."""
    try:
        return ImageOps.exif_transpose(picture)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose a good picture
        return picture.copy()


def _open_source(source: ImageSource) -> tuple[str, BinaryIO]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("<bytes>", "empty data (0 bytes)")
        return "<bytes>", io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        return str(getattr(source, "name", "<stream>")), source  # type: ignore[return-value]
    path = Path(source)
    problem = file_problem(path)
    if problem:
        raise ImageError(str(path), problem)
    try:
        return str(path), open(path, "rb")
    except OSError as error:
        raise ImageError(str(path), f"cannot be opened ({error.strerror or error})") from None


def file_problem(path: Path) -> str | None:
    """Why a path cannot be a picture file, told from its metadata alone (nothing is read):
    missing, a folder, a device, pipe or socket, empty, or over MAX_FILE_BYTES; else None."""
    try:
        found = path.stat()
    except OSError:
        return missing_reason(path)
    if stat.S_ISDIR(found.st_mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(found.st_mode):
        return "is not a regular file (a device, a pipe or a socket): not a picture"
    if found.st_size == 0:
        return "empty file (0 bytes)"
    if found.st_size > MAX_FILE_BYTES:
        return (f"too large to be a picture imgclf reads ({found.st_size / 1e6:,.0f} MB; at "
                f"most {MAX_FILE_BYTES / 1e6:,.0f} MB)")
    return None


def missing_reason(path: Path) -> str:
    """Why a path that does not exist cannot be read: missing, a broken link or a link loop."""
    if not path.is_symlink():
        return "file not found"
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13 says a loop this way
        return "symbolic link loop: it leads back to itself"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop: it leads back to itself"
    return f"broken symbolic link (to {os.readlink(path)}, which does not exist)"


def sniff_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce ("JPEG", "PNG", ...), or None.

    Example:
        >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...")
        'PNG'
    """
    lowered = head[:16].lower()
    for signature, kind in _SIGNATURES:
        if lowered.startswith(signature):
            if kind == "WebP" and lowered[8:12] != b"webp":
                return None  # RIFF also holds WAV and AVI files
            return kind
    return None


def not_an_image_reason(head: bytes) -> str:
    """Say what data that is not an image looks like, so the user can tell what went wrong."""
    kind = sniff_format(head)
    if kind:
        return f"corrupt image (starts like a {kind} but cannot be decoded)"
    head = head[:512].lstrip().lower()  # the markers below are lower-cased too
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image: it is an HTML page (a web page saved under an image name?)"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "not an image: SVG vector drawings are not supported; convert it to PNG"
    if head[:1] in (b"{", b"[", b"<"):
        return "not an image: it is a text file"
    return "not an image (unknown or unsupported format)"


def _not_an_image_reason(stream: BinaryIO) -> str:
    try:
        stream.seek(0)
        head = stream.read(512)
    except (OSError, ValueError):
        head = b""
    return not_an_image_reason(head)
