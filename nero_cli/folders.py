"""Reading image folders: the ImageFolder layout ``root/CLASS/*.png``, or a flat folder of images.

Which of the model's classes each class folder is, is decided later (see
:func:`nero_cli.selection.folder_classes`); here a sample's label is its folder's position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir())


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


def _read_pictures(root: Path, files: list[Path], channels: int | None) -> np.ndarray:
    """The images as one uint8 ``(N, C, H, W)`` stack (one DataError line for an unreadable file)."""
    pics = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                pics.append(im.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{f}: unreadable image ({exc.__class__.__name__}); remove or replace it") from None
    gray = all(p.mode in ("L", "1", "I;16", "I", "F") for p in pics)
    want = channels or (1 if gray else 3)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(want)
    if mode is None:
        raise DataError(f"{root}: the model expects {want} channels; images can give 1, 3 or 4")
    arrs = [np.asarray(p.convert(mode)) for p in pics]
    sizes = {a.shape[:2] for a in arrs}
    if len(sizes) > 1:
        raise DataError(f"{root}: images differ in size ({', '.join(f'{h}x{w}' for h, w in sorted(sizes)[:3])}); "
                        "resize them to one size first")
    stack = np.stack(arrs)
    return stack[:, None] if stack.ndim == 3 else np.moveaxis(stack, -1, 1)


def read_folder(root: Path, channels: int | None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """The images of ``root`` as uint8 ``(N, C, H, W)``, each one's class folder position (None for
    a flat folder) and the class folders, sorted (None for a flat folder)."""
    files, folders = _folder_files(root)
    stack = _read_pictures(root, [f for f, _ in files], channels)
    labels = np.array([c for _, c in files], dtype=np.int64) if folders is not None else None
    return stack, labels, folders
