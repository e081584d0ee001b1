"""Pictures sent with a message: checked, stored with the turn, and read.

A picture arrives as a data: URI, raw bytes or a file path (the Python API), and is checked by its content
(Pillow must open it as PNG, JPEG, GIF, WebP or BMP; the size and pixel count are bounded), never by its name
or claimed type; nothing in it is ever executed. It is stored content-addressed under the data dir, one folder
per user (`images/<user key>/<sha256>.<ext>`), so forgetting a user removes exactly their pictures.

The embedded models cannot see: a picture's text is read by OCR (RapidOCR: PP-OCR detection and recognition
models for Chinese and English, run by onnxruntime) and given to the model as quoted data. An OpenAI-compatible
backend gets the picture itself (vision models), an http(s) URL unchanged; dilm never fetches a URL.

Source: RapidOCR (github.com/RapidAI/RapidOCR, `rapidocr-onnxruntime` on PyPI); PaddleOCR's PP-OCR models.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dilm.errors import InvalidInputError

MAX_BYTES = 8 * 1024 * 1024
MAX_IMAGES = 4  # per message
MAX_PIXELS = 40_000_000  # a decompression bomb is refused before it is decoded
TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}
EXTENSIONS = {v: k.lower().replace("jpeg", "jpg") for k, v in TYPES.items()}
MEDIA_TYPES = {ext: media for media, ext in EXTENSIONS.items()}  # a stored file's type, by its extension
_DATA_URI = re.compile(r"^data:([\w/+.-]*)(;[^,]*)?,(.*)$", re.S)
MIN_CONFIDENCE = 0.5  # OCR lines below this are noise more often than text


@dataclass(frozen=True)
class Picture:
    """A checked picture: its bytes, media type (from its content) and sha256 (hex)."""

    data: bytes
    media_type: str
    sha256: str

    @property
    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"

    def describe(self, text: str | None = None) -> dict[str, Any]:
        """What a message's meta records of it."""
        return {"sha256": self.sha256, "media_type": self.media_type, "bytes": len(self.data), "text": text}


def load(source: str | bytes | Path, max_bytes: int = MAX_BYTES) -> Picture:
    """A checked picture from a data: URI, raw bytes or a file path. Raises InvalidInputError (an http(s) URL,
    not base64, too large, not a picture of an accepted type, too many pixels)."""
    if isinstance(source, Path):
        try:
            if not source.is_file() or source.stat().st_size > max_bytes:
                raise InvalidInputError(f"{source} is not a file of at most {max_bytes} bytes")
            data = source.read_bytes()
        except OSError as e:
            raise InvalidInputError(f"cannot read the image {source}: {e.strerror}") from None
    elif isinstance(source, str):
        data = _from_uri(source, max_bytes)
    else:
        data = source
    if len(data) > max_bytes:
        raise InvalidInputError(f"the image is {len(data)} bytes; at most {max_bytes} are accepted")
    return Picture(data, media_type(data), hashlib.sha256(data).hexdigest())


def _from_uri(uri: str, max_bytes: int) -> bytes:
    if uri.startswith(("http://", "https://")):
        raise InvalidInputError("image_url: dilm does not fetch URLs; send the image as a data: URI (base64)")
    m = _DATA_URI.match(uri)
    if not m or "base64" not in (m.group(2) or ""):
        raise InvalidInputError("image_url: a data: URI with base64 content is expected (data:image/png;base64,...)")
    if len(m.group(3)) > max_bytes * 4 // 3 + 4:
        raise InvalidInputError(f"the image is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(m.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("image_url: the data: URI is not valid base64") from None


def media_type(data: bytes) -> str:
    """The picture's media type, read from its content. Raises InvalidInputError when it is none accepted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = img.format or ""
            if img.width * img.height > MAX_PIXELS:
                raise InvalidInputError(f"the image has {img.width}x{img.height} pixels; at most {MAX_PIXELS}")
            img.verify()  # PNG checksums; it leaves the image unusable, so it is decoded from a fresh open
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # the whole picture decodes (a cut-off JPEG, GIF or BMP passes verify())
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInputError("the attachment is not an image dilm can read (PNG, JPEG, GIF, WebP or BMP)") from None
    if kind not in TYPES:
        raise InvalidInputError(f"{kind or 'this'} images are not accepted: send PNG, JPEG, GIF, WebP or BMP")
    return TYPES[kind]


class PictureStore:
    """Pictures on disk, content-addressed in one folder per user under `root` (the data dir's `images/`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, user: str) -> Path:
        # A hash, not the name: user names may hold characters no file system takes.
        return self.root / hashlib.sha256(user.encode()).hexdigest()[:24]

    def path(self, user: str, sha256: str, media: str) -> Path:
        return self.folder(user) / f"{sha256}.{EXTENSIONS[media]}"

    def save(self, user: str, picture: Picture) -> Path:
        """Write `picture` for `user` (atomically; once: the same content has the same name)."""
        path = self.path(user, picture.sha256, picture.media_type)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(picture.data)
            os.replace(tmp, path)
        return path

    def find(self, user: str, sha256: str) -> Path | None:
        """The user's stored picture with this hash, or None."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        return next(iter(sorted(self.folder(user).glob(f"{sha256}.*"))), None)

    def export(self, user: str) -> list[dict[str, Any]]:
        """The user's pictures: sha256, media type and the bytes as base64."""
        folder = self.folder(user)
        files = sorted(p for p in folder.glob("*.*") if not p.name.endswith(".part")) if folder.exists() else []
        return [
            {
                "sha256": p.stem,
                "media_type": MEDIA_TYPES.get(p.suffix[1:], ""),
                "data": base64.b64encode(p.read_bytes()).decode(),
            }
            for p in files
        ]

    def forget(self, user: str) -> int:
        """Remove all of `user`'s pictures; returns how many there were."""
        folder = self.folder(user)
        count = len(list(folder.glob("*"))) if folder.exists() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count


class TextReader:
    """OCR: the text lines of a picture, top to bottom. The models load on first use (about 0.5 s); one
    picture is read at a time (onnxruntime uses every core already)."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.Lock()

    def read(self, picture: Picture) -> str:
        """The picture's text ("" when it has none). Raises InvalidInputError when OCR is not installed."""
        import numpy as np
        from PIL import Image

        try:
            with Image.open(io.BytesIO(picture.data)) as img:
                pixels = np.asarray(img.convert("RGB"))[:, :, ::-1]  # RapidOCR takes OpenCV's BGR order
        except (OSError, ValueError):  # `load` decoded it once; a picture built by hand may not decode
            raise InvalidInputError("the image cannot be decoded") from None
        with self._lock:
            if self._engine is None:
                self._engine = _ocr_engine()
            found, _ = self._engine(pixels)
        # RapidOCR gives the lines in reading order: top to bottom, left to right.
        return "\n".join(
            text.strip() for _, text, score in found or [] if float(score) >= MIN_CONFIDENCE and text.strip()
        )


def _ocr_engine() -> Any:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        raise InvalidInputError(
            "reading images needs OCR: pip install rapidocr-onnxruntime (scripts/setup.sh installs it)"
        ) from None
    return RapidOCR()
