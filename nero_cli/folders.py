"""Reading image folders: the ImageFolder layout ``root/CLASS/*.png``, or a flat folder of images.

Which of the model's classes each class folder is, is decided later (see
:func:`nero_cli.selection.folder_classes`); here a sample's label is its folder's position.

A folder is read lazily: :func:`read_folder` opens every file's header (its size and colour
mode; an unreadable file is refused here) and hashes the files' bytes, and :class:`FolderRows`
decodes only the files of the rows asked for, with a small thread pool.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .errors import DataError
from .lazy import pil_image as Image

if TYPE_CHECKING:
    import PIL.Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
GRAY_MODES = ("L", "1", "I;16", "I", "F")
#: Grey modes deeper than 8 bits (read by :func:`_deep_gray`).
DEEP_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: Threads that decode a chunk's image files.
WORKERS = max(1, min(4, os.cpu_count() or 1))


def _image_files(folder: Path) -> list[Path]:
    """The image files in ``folder``, sorted; hidden ones (``.x``, macOS's ``._x``) skipped, as in ``.tar`` shards."""
    return sorted(f for f in folder.iterdir()
                  if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and not f.is_dir())


def _folder_files(root: Path) -> tuple[list[tuple[Path, int]], list[str] | None]:
    """An image folder's files with their folder's position, and the class folders (sorted): the
    ImageFolder layout ``root/CLASS/*.png``, or (None) a flat folder of images, unlabelled."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _image_files(root)
    if folders and loose:
        raise DataError(f"{root}: holds both class folders and images ({loose[0].name}); put every image in its "
                        "class folder, or use a folder of images only (read as unlabelled)")
    if not folders:
        if not loose:
            raise DataError(f"{root}: no image files (.png, .jpg, ...) in it or in class folders root/CLASS/*.png")
        return [(f, -1) for f in loose], None
    files = [(f, ci) for ci, cname in enumerate(folders) for f in _image_files(root / cname)]
    if not files:
        raise DataError(f"{root}: no image files (.png, .jpg, ...) in its class folders")
    return files, folders


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot read (a decompression bomb is not an OSError)."""
    return OSError, Image.DecompressionBombError  # UnidentifiedImageError is an OSError


def _unreadable(f: Path | BinaryIO | str, exc: BaseException) -> DataError:
    return DataError(f"{f}: unreadable image ({exc.__class__.__name__}); remove or replace it")


def header(f: Path | BinaryIO, name: str | None = None) -> tuple[str, int, int]:
    """A file's colour mode, height and width, from its header (``f`` a path or a binary file
    object; ``name`` names it in the message when it is unreadable)."""
    try:
        with Image.open(f) as im:
            return im.mode, im.height, im.width
    except unreadable_errors() as exc:
        raise _unreadable(name or f, exc) from None


def decode(f: Path | BinaryIO, mode: str, name: str | None = None) -> np.ndarray:
    """One image file (a path or a binary file object, named ``name`` in messages) as uint8
    ``(C, H, W)`` in ``mode`` (``L``, ``RGB`` or ``RGBA``)."""
    try:
        with Image.open(f) as im:
            im.load()
            a = _deep_gray(im, name or f, mode) if im.mode in DEEP_GRAY else np.asarray(im.convert(mode))
    except unreadable_errors() as exc:
        raise _unreadable(name or f, exc) from None
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def _deep_gray(im: PIL.Image.Image, name: Any, mode: str = "L") -> np.ndarray:
    """A 16-bit grey image (``I;16*``, or ``I`` holding 0..65535) as uint8 grey, ``round(v / 257)``,
    then in ``mode`` as an 8-bit grey image would be: Pillow's own conversion of it (to ``L``,
    ``RGB`` or ``RGBA``) clips at 255, which turned every non-zero pixel white. A 32-bit image
    with larger values, or a float one, has no known range: refused in one line."""
    a = np.asarray(im).astype(np.int64)
    if im.mode == "F" or a.min(initial=0) < 0 or a.max(initial=0) > 65535:
        raise DataError(f"{name}: a {im.mode} image with values from {a.min()} to {a.max()}; nero reads 8- and "
                        "16-bit images: convert it to one of them")
    gray = np.rint(a / 257.0).astype(np.uint8)
    return gray if mode == "L" else np.asarray(Image.fromarray(gray).convert(mode))


class FolderRows:
    """The rows of an image folder: each read decodes its files (in order) with :data:`WORKERS` threads."""

    slow = True

    def __init__(self, files: list[Path], mode: str, channels: int, largest: int):
        self.files, self.mode, self.n = files, mode, len(files)
        self.row_bytes = channels * largest
        self._pool: ThreadPoolExecutor | None = None

    def read(self, positions: np.ndarray) -> list[np.ndarray]:
        return self.decode_all([self.files[int(p)] for p in positions])

    def decode_all(self, files: list, names: list[str] | None = None) -> list[np.ndarray]:
        """``files`` (paths or binary file objects, named ``names`` in messages) decoded in order."""
        names = names or [None] * len(files)  # type: ignore[list-item]
        if len(files) == 1 or WORKERS == 1:
            return [decode(f, self.mode, n) for f, n in zip(files, names)]
        self._pool = self._pool or ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="nero-decode")
        return list(self._pool.map(decode, files, [self.mode] * len(files), names))


@dataclass
class Folder:
    """An image folder, read lazily: its rows, each file's class folder position (None for a
    flat folder), the class folders (sorted; None for a flat folder), the images' size and channels
    (the size when all are one size, else None), and the digest of its files."""

    rows: FolderRows
    labels: np.ndarray | None
    folders: list[str] | None
    channels: int
    size: tuple[int, int] | None
    digest: str


def _digest(root: Path, files: list[tuple[Path, int]], mode: str) -> str:
    """sha256 of the colour mode and every file's path (relative to ``root``), class and bytes."""
    h = hashlib.sha256(f"mode={mode}\0".encode())
    for f, c in files:
        h.update(f"{f.relative_to(root).as_posix()}\0{c}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def colour_mode(source: str, gray: bool, channels: int | None) -> tuple[str, int]:
    """The colour mode images are decoded in and its channels: the model's ``channels``, else 1
    when every image is ``gray``, else 3."""
    want = channels or (1 if gray else 3)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(want)
    if mode is None:
        raise DataError(f"{source}: the model expects {want} channels; images can give 1, 3 or 4")
    return mode, want


def one_size(source: str, sizes: set[tuple[int, int]], resized: bool) -> list[tuple[int, int]]:
    """The images' sizes (height, width), sorted; more than one refused unless they are to be
    ``resized`` (the message names ``--resize`` and ``--center-crop``)."""
    ordered = sorted(sizes)
    if len(ordered) > 1 and not resized:
        raise DataError(f"{source}: images differ in size (height x width "
                        f"{', '.join(f'{h}x{w}' for h, w in ordered[:3])}{', ...' if len(ordered) > 3 else ''}); "
                        "give --resize H,W to resize each to H x W, with --center-crop to keep the aspect ratio")
    return ordered


def read_folder(root: Path, channels: int | None, resized: bool = False) -> Folder:
    """The image folder ``root``, read lazily. Images of different sizes are refused unless they
    are to be ``resized`` (the message names ``--resize`` and ``--center-crop``)."""
    files, folders = _folder_files(root)
    heads = [header(f) for f, _ in files]
    mode, want = colour_mode(str(root), all(m in GRAY_MODES for m, _, _ in heads), channels)
    sizes = one_size(str(root), {(h, w) for _, h, w in heads}, resized)
    labels = np.array([c for _, c in files], dtype=np.int64) if folders is not None else None
    rows = FolderRows([f for f, _ in files], mode, want, max(h * w for h, w in sizes))
    return Folder(rows, labels, folders, want, sizes[0] if len(sizes) == 1 else None, _digest(root, files, mode))
