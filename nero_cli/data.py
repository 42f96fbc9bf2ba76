"""Loading evaluation data for image tasks: ``.npz``, ``.npy``, ImageFolder layout, ``.tar`` shards, ``sample:NAME``.

An ``.npz`` is read through :mod:`nero_cli.npz`: declared shapes first, a load that would not
fit in memory refused with its figure, and with ``--limit`` / ``--classes`` / ``--sample`` only
the leading rows that hold the selected samples inflated (the labels are read first; which
samples are chosen is :mod:`nero_cli.selection`). An image folder is read by
:mod:`nero_cli.folders`; :func:`relabel_folders` maps its class folders to the model's classes.

Images larger than :data:`nero_cli.sources.EAGER_BYTES` as float32 are not read whole: the
Dataset holds a :class:`~nero_cli.sources.LazyImages` that reads the rows indexed (a memory map
of a ``.npy`` or of an ``.npz`` member stored uncompressed, a deflated member inflated forward,
image files decoded by chunk), so a sweep holds one chunk; the pixels are the same either way.
``--resize`` / ``--center-crop`` (:mod:`nero_cli.shaping`) bring every image to one size.

The data's ``sha256`` is the archive's digest (:meth:`nero_cli.npz.NpzArchive.digest`: every
member's stored bytes), the same whichever rows are read; a ``.npy``'s is its file's, an image
folder's its files' (:func:`nero_cli.folders.read_folder`), ``.tar`` shards' their bytes
(:func:`nero_cli.tar_shards.read_shards`); with ``--resize`` it is a digest of
that and the size, so resized data never share a cache entry with the data as they are.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import sample_models

from .dataset import Dataset, check_labels, class_names_of, hash_arrays, reshaped, shaped_digest
from .errors import DataError, OptionError
from .folders import Folder, read_folder
from .npz import NpzArchive, StreamRows, check_memory, open_npy, open_npz
from .pixels import normalise_pixels, to_nchw
from .selection import Selection, positions
from .shaping import Shaping, parse_resize
from . import sources
from .sources import ArrayRows, LazyImages, converter, held, scan_pixels
from .tar_shards import is_shards, read_shards

#: ``.npz`` keys a task reads besides its inputs: per-sample arrays (cut with the inputs) and the class names.
SAMPLE_KEYS = ("labels", "boxes", "box_labels", "masks", "flow")
NAMES_KEY = "class_names"


def read_npz(path: Path, key: str, source: str, limit: int | None = None, classes: list[str] | None = None,
             label_key: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of an ``.npz`` that a task reads (``key``, :data:`SAMPLE_KEYS`, ``class_names``)
    and the archive's digest; ``allow_pickle=False`` semantics (object arrays are refused).

    With ``limit`` / ``classes`` only the leading rows that hold the selected samples are inflated
    (:func:`select` then picks them); ``classes`` select on ``label_key`` (read first, whole).
    A load whose decoded size exceeds the memory available is refused with its figure.
    """
    sel = Selection(tuple(classes or ()), limit)
    with open_npz(path) as archive:
        if key not in archive.members:
            raise DataError(f"{path}: no '{key}' array; found {', '.join(sorted(archive.members)) or 'no arrays'}")
        keys = [k for k in (key, *SAMPLE_KEYS, NAMES_KEY) if k in archive.members]
        picked = _archive_positions(archive, key, source, sel, label_key, limit_labels=False)
        stop = int(picked[0][-1]) + 1 if picked is not None else None
        cut = {k: None if k == NAMES_KEY else stop for k in keys}
        lazy = _lazy_rows(archive, key, stop, source)
        if lazy is not None:
            del cut[key]
        _check_fits(archive, key, cut, source)
        arrays: dict[str, Any] = {k: archive.read(k, rows) for k, rows in cut.items()}
        if lazy is not None:
            arrays[key] = lazy
        return arrays, archive.digest()


def _lazy_rows(archive: NpzArchive, key: str, rows: int | None, source: str) -> Any:
    """The images ``key`` (its first ``rows`` rows) as a row source when they are too large to
    read whole as float32 (read by offset when stored, inflated forward when deflated, in C order;
    a Fortran-order member is read once as stored); None to read them whole."""
    m = archive.members[key]
    if key != "images" or m.dtype.kind not in "iuf" or len(m.shape) not in (3, 4) \
            or 4 * math.prod(m.shape_read(rows)) <= sources.EAGER_BYTES:
        return None
    stored = archive.stored(key, rows)
    if stored is not None:
        return stored
    if not m.fortran:
        return StreamRows(archive.path, m, rows)
    check_memory(m.nbytes(rows), f"'{key}' {m.shape_read(rows)} {m.dtype} (Fortran order: read whole)", source)
    return ArrayRows(archive.read(key, rows))


def _archive_positions(archive: NpzArchive, key: str, source: str, sel: Selection, label_key: str | None,
                       limit_labels: bool = True) -> tuple[np.ndarray, list[str]] | None:
    """The positions ``sel`` picks from the archive's ``label_key`` labels (read whole, first) and
    its warnings; None when every row is needed. Without labels ``--limit`` and ``--sample`` need
    only the row count; a ``--limit`` alone reads the labels only with ``limit_labels`` (to warn
    when the first rows miss classes). Tasks whose labels are not stored (``label_key`` None)
    select only on ``--limit`` here."""
    m = archive.members
    n = m[key].rows
    if sel.everything or not n or any(m[k].rows != n for k in SAMPLE_KEYS if k in m):
        return None  # all rows; or malformed: read whole, the task's loader says what is wrong
    if label_key is None and (sel.classes or sel.sample is not None):
        return None
    labels, names = None, None
    if label_key is not None and label_key in m and (limit_labels or sel.classes or sel.sample is not None):
        _check_fits(archive, key, {k: None for k in (label_key, NAMES_KEY) if k in m}, source)
        labels = archive.read(label_key)
        if labels.ndim != 1 or labels.dtype.kind not in "iuf":
            return None
        names = class_names_of(archive.read(NAMES_KEY)) if NAMES_KEY in m else None
    return positions(labels, n, sel, names, source)


def npz_positions(spec: str, key: str, sel: Selection) -> tuple[np.ndarray, list[str]] | None:
    """The positions ``sel`` picks in the ``.npz`` behind ``--data`` (a path or ``sample:NAME``),
    from its ``labels`` alone, and the selection's warnings; None when it is not such a file or its
    arrays do not line up (the loader then reads it and says what is wrong), or nothing is cut."""
    try:
        path, source = _npz_path(spec)
    except DataError:
        return None
    with open_npz(path) as archive:
        if key not in archive.members:
            return None
        return _archive_positions(archive, key, source, sel, "labels")


def _check_fits(archive: NpzArchive, key: str, cut: dict[str, int | None], source: str) -> None:
    """Refuse reading ``cut`` (key -> rows) if the arrays as stored, plus the float32 copy of the
    inputs that nero makes of them, exceed the memory available."""
    needed = sum(archive.members[k].nbytes(rows) for k, rows in cut.items())
    if key in cut:
        needed += 4 * math.prod(archive.members[key].shape_read(cut[key]))
    what = " and ".join(f"'{k}' {archive.members[k].shape_read(rows)} {archive.members[k].dtype}"
                        f"{' as float32' if k == key else ''}" for k, rows in cut.items())
    check_memory(needed, what, source)


def images_from_arrays(arrays: dict[str, Any], digest: str, source: str, channels: int | None = None,
                       shaping: Shaping | None = None) -> Dataset:
    """Images ``images`` (an array or a row source) with optional ``labels`` and ``class_names``
    (as in an ``.npz``), resized by ``shaping``."""
    raw = arrays["images"]
    if len(raw.shape) not in (3, 4):
        raise DataError(f"{source}: 'images' must be (N, H, W), (N, C, H, W) or (N, H, W, C); found shape {raw.shape}")
    if math.prod(raw.shape) == 0:
        raise DataError(f"{source}: no images (the array is empty, shape {raw.shape})")
    labels = check_labels(arrays.get("labels"), int(raw.shape[0]), source)
    names = class_names_of(arrays[NAMES_KEY]) if NAMES_KEY in arrays else None
    return Dataset(_pixels(raw, source, channels, shaping), None if labels is None else torch.from_numpy(labels),
                   names, source, shaped_digest(digest, shaping), shaping=shaping)


def _pixels(raw: Any, source: str, channels: int | None, shaping: Shaping | None) -> Any:
    """Images as float32 ``(N, C, H, W)``: a tensor for a small array, else read by chunk."""
    if shaping is None and isinstance(raw, np.ndarray) and 4 * raw.size <= sources.EAGER_BYTES:
        return torch.from_numpy(np.ascontiguousarray(normalise_pixels(to_nchw(raw, source, channels), source)))
    rows = ArrayRows(raw) if isinstance(raw, np.ndarray) else raw
    if rows.dtype.kind not in "iuf":
        raise DataError(f"{source}: 'images' must be uint8 or float, found dtype {rows.dtype}")
    layout = partial(to_nchw, source=source, channels=channels)
    c, h, w = layout(np.broadcast_to(np.zeros((), rows.dtype), rows.shape)).shape[1:]  # checks the axes, reads nothing
    scan_pixels(rows, rows.dtype, source)
    item = (c, *shaping.size) if shaping else (c, h, w)
    return held(LazyImages(rows, converter(layout, shaping), item, source))


def _folder_dataset(f: Folder, source: str, shaping: Shaping | None = None) -> Dataset:
    """An ImageFolder (labels: the class folders' positions, mapped to the model's classes later by
    :func:`relabel_folders`), a flat folder of images (no labels) or ``.tar`` shards (labels: their
    ``.cls`` classes), read lazily."""
    item = (f.channels, *(shaping.size if shaping else f.size))  # type: ignore[misc]
    images = held(LazyImages(f.rows, converter(lambda b: b, shaping), item, source))
    return Dataset(images, None if f.labels is None else torch.from_numpy(f.labels), f.folders, source,
                   shaped_digest(f.digest, shaping), names_complete=False, folders=f.folders, shaping=shaping)


def _load_npy(path: Path, channels: int | None, limit: int | None, shaping: Shaping | None) -> Dataset:
    """A ``.npy`` of images (unlabelled), read by offset; its digest is the file's sha256."""
    images = open_npy(path, limit)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return images_from_arrays({"images": images}, h.hexdigest(), str(path), channels, shaping)


#: The forms of ``--data`` that image classification reads, for messages.
IMAGE_KINDS = ("an .npz file", "a .npy file of images", "an image folder", ".tar shards")


def load_images(spec: str, channels: int | None = None, limit: int | None = None,
                classes: list[str] | None = None, shaping: Shaping | None = None) -> Dataset:
    """Load ``--data``: an ``.npz``, a ``.npy`` of images, an ImageFolder directory (or a flat
    folder of images), WebDataset ``.tar`` shards (:mod:`nero_cli.tar_shards`) or ``sample:NAME``,
    resized by ``shaping``; with ``limit`` / ``classes``, an ``.npz`` is read only up to the last
    sample they select (see :func:`read_npz`)."""
    path = Path(spec)
    if not spec.startswith("sample:") and path.is_dir():
        return _folder_dataset(read_folder(path, channels, resized=shaping is not None), str(path), shaping)
    if is_shards(spec):
        return _folder_dataset(read_shards(spec, channels, resized=shaping is not None), spec, shaping)
    if not spec.startswith("sample:") and path.suffix == ".npy" and path.exists():
        return _load_npy(path, channels, limit, shaping)
    return load_task_npz(spec, "images", partial(images_from_arrays, shaping=shaping), channels, limit, classes,
                         "labels", kinds=IMAGE_KINDS)


def relabel_folders(data: Dataset, class_map: dict[str, int], how: str, class_names: list[str] | None) -> Dataset:
    """An ImageFolder's labels as the class ids ``class_map`` gives its folders (found ``how``: by the
    model's ``class_names``, by integer folder names, or by folder order)."""
    if data.folders is None or data.labels is None:
        return data
    lut = np.array([class_map[f] for f in data.folders], dtype=np.int64)
    by_name = how == "class names"
    return replace(data, labels=torch.from_numpy(lut[data.labels.numpy()]),
                   class_names=class_names if by_name else (data.folders if how == "folder order" else None),
                   names_complete=by_name, class_map=dict(class_map), class_map_from=how)


def selected(data: Dataset, sel: Selection) -> tuple[Dataset, list[str]]:
    """``data`` cut to ``sel`` (see :mod:`nero_cli.selection`) and the selection's warnings."""
    if sel.everything:
        return data, []
    labels = data.labels.numpy() if data.labels is not None else None
    keep, notes = positions(labels, len(data), sel, data.class_names, data.source)
    return (data.subset(keep) if len(keep) != len(data) else data), notes


def select(data: Dataset, classes: list[str] | None = None, limit: int | None = None, sample: int | None = None,
           seed: int = 0) -> Dataset:
    """``--classes`` (ids or names) then ``--limit`` (the first N) or ``--sample`` (N, stratified, for ``seed``)."""
    return selected(data, Selection(tuple(classes or ()), limit, sample, seed))[0]


def resizable(task: Any) -> bool:
    """Whether ``--resize`` applies to ``task``'s inputs: images whose truth is a class (the boxes,
    masks or flow of other tasks would have to be resized with them)."""
    return task.input_kind == "image" and task.output == "invariant"


def _read(task: Any, spec: str, channels: int | None, shaping: Shaping | None, limit: int | None = None,
          classes: list[str] | None = None) -> Dataset:
    if shaping is None:
        return task.load_data(spec, channels, limit=limit, classes=classes)
    return load_images(spec, channels, limit=limit, classes=classes, shaping=shaping)


def load_selected(task: Any, spec: Any, channels: int | None, sel: Selection,
                  relabel: Callable[[Dataset], Dataset] = lambda d: d,
                  shaping: Shaping | None = None) -> tuple[Dataset, list[str]]:
    """``--data`` (a string, or a Dataset) for ``task`` cut to ``sel``, and the selection's warnings;
    its images resized by ``shaping`` (``--resize``, classification only).

    An ``.npz`` whose stored labels are the task's truth is read only up to the last selected
    sample, its labels read first (:func:`npz_positions`); other data are read (no further than
    ``--limit`` allows), given to ``relabel`` (an ImageFolder's folders to the model's classes),
    then cut.
    """
    if shaping is not None and not resizable(task):
        raise OptionError(f"--resize applies to classification images; the {task.name} task's ground truth "
                          "would have to be resized with them: resize the data first")
    if isinstance(spec, Dataset):
        return selected(relabel(reshaped(spec, shaping)), sel)
    picked = npz_positions(spec, task.input_key, sel) if task.truth == "labels" else None
    if picked is not None:
        keep, notes = picked
        data = _read(task, spec, channels, shaping, limit=int(keep[-1]) + 1)
        return (data.subset(keep) if len(keep) != len(data) else data), notes
    data = _read(task, spec, channels, shaping, limit=sel.limit, classes=list(sel.classes) or None)
    return selected(relabel(data), sel)


def load_recorded(task: Any, options: dict[str, Any], data_info: dict[str, Any], channels: int | None,
                  class_names: list[str] | None) -> Dataset:
    """The samples of a recorded run (``nero merge``): its ``--data`` cut to its recorded options
    (and resized as recorded), an ImageFolder's folders mapped to classes as its run.json records."""
    sel = Selection(tuple(options.get("classes") or ()), options.get("limit"), options.get("sample"),
                    options.get("seed") or 0)
    cmap = data_info.get("class_map")
    how = data_info.get("class_map_from") or "folder order"
    shaping = parse_resize(options.get("resize"), bool(options.get("center_crop")))
    return load_selected(task, options["data"], channels, sel,
                         lambda d: relabel_folders(d, cmap, how, class_names) if cmap else d, shaping)[0]


def _npz_path(spec: str, kinds: tuple[str, ...] = ("an .npz file",)) -> tuple[Path, str]:
    """The ``.npz`` file behind ``--data`` (a path or ``sample:NAME``) and its display name;
    ``kinds`` name the forms of ``--data`` the task accepts, for the messages."""
    if spec.startswith("sample:"):
        key = spec.split(":", 1)[1]
        if key not in sample_models.SAMPLE_DATA:
            raise DataError(f"{spec}: no such sample data; available: {', '.join('sample:' + k for k in sample_models.SAMPLE_DATA)}")
        return sample_models.data_path(key), spec
    path = Path(spec)
    if path.is_dir():
        raise DataError(f"{path}: this task reads an .npz file, found a directory")
    if not path.exists():
        raise DataError(f"{path}: data not found; give {', '.join(kinds)} or sample:NAME")
    if path.suffix != ".npz":
        raise DataError(f"{path}: expected {' or '.join(kinds)}, found a '{path.suffix}' file")
    return path, str(path)


def _finite(arr: np.ndarray, name: str, source: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{source}: '{name}' contains NaN or inf; clean the data first")


def load_task_npz(spec: str, key: str, build, channels: int | None = None,  # noqa: ANN001
                  limit: int | None = None, classes: list[str] | None = None, label_key: str | None = None,
                  kinds: tuple[str, ...] = ("an .npz file",)) -> Dataset:
    """An ``.npz`` (or ``sample:NAME``) whose inputs are ``arrays[key]``, built by ``build``; read
    only up to the last sample ``limit`` / ``classes`` select (see :func:`read_npz`)."""
    path, source = _npz_path(spec, kinds)
    arrays, digest = read_npz(path, key, source, limit, classes, label_key)
    return build(arrays, digest, source, channels)


def points_from_arrays(arrays: dict[str, np.ndarray], digest: str, source: str, channels: int | None = None) -> Dataset:
    """Point clouds: ``points`` ``(N, P, 3)`` and optional ``labels`` ``(N,)``, ``class_names``."""
    pts = arrays["points"]
    if pts.ndim != 3 or pts.shape[-1] != 3:
        raise DataError(f"{source}: 'points' must be (N, P, 3), found shape {pts.shape}")
    if len(pts) == 0 or pts.shape[1] == 0:
        raise DataError(f"{source}: no points (the array is empty)")
    if pts.dtype.kind != "f":
        raise DataError(f"{source}: 'points' must be floats, found dtype {pts.dtype}")
    _finite(pts, "points", source)
    labels = check_labels(arrays.get("labels"), len(pts), source)
    names = class_names_of(arrays[NAMES_KEY]) if NAMES_KEY in arrays else None
    return Dataset(torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)),
                   None if labels is None else torch.from_numpy(labels), names, source, digest)


def frames_from_arrays(arrays: dict[str, np.ndarray], digest: str, source: str, channels: int | None = None) -> Dataset:
    """Frame pairs: ``frames`` ``(N, 2, H, W)`` or ``(N, 2, C, H, W)``, optional ``flow`` ``(N, 2, H, W)``."""
    fr = arrays["frames"]
    if fr.ndim == 4 and fr.shape[1] == 2:
        fr = fr[:, :, None]
    if fr.ndim != 5 or fr.shape[1] != 2:
        raise DataError(f"{source}: 'frames' must be (N, 2, H, W) or (N, 2, C, H, W), found shape {arrays['frames'].shape}")
    n, _, c, h, w = fr.shape
    pix = normalise_pixels(fr.reshape(n, 2 * c, h, w), source)
    targets: dict[str, torch.Tensor] = {}
    if "flow" in arrays:
        flow = arrays["flow"]
        if flow.shape != (n, 2, h, w):
            raise DataError(f"{source}: 'flow' must be (N, 2, H, W) = {(n, 2, h, w)}, found {flow.shape}")
        _finite(flow, "flow", source)
        targets["flow"] = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))
    return Dataset(torch.from_numpy(np.ascontiguousarray(pix)), None, None, source, digest, targets=targets)


def detection_from_arrays(arrays: dict[str, np.ndarray], digest: str, source: str,
                          channels: int | None = None) -> Dataset:
    """Images with boxes: ``boxes`` ``(N, 4)`` or ``(N, M, 4)`` (NaN rows pad), ``box_labels`` ``(N,)`` or ``(N, M)``."""
    base = images_from_arrays({k: v for k, v in arrays.items() if k not in ("labels",)}, digest, source, channels)
    n = len(base)
    if "boxes" not in arrays:
        return base  # no ground truth: consensus only
    boxes = arrays["boxes"].astype(np.float32)
    if boxes.ndim == 2:
        boxes = boxes[:, None]
    if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[-1] != 4:
        raise DataError(f"{source}: 'boxes' must be (N, 4) or (N, M, 4) with N = {n}, found {arrays['boxes'].shape}")
    if "box_labels" not in arrays:
        raise DataError(f"{source}: 'boxes' given without 'box_labels'; add the class of each box")
    bl = arrays["box_labels"]
    if bl.ndim == 1:
        bl = bl[:, None]
    if bl.shape != boxes.shape[:2]:
        raise DataError(f"{source}: 'box_labels' must be (N,) or (N, M) matching boxes {boxes.shape[:2]}, found {arrays['box_labels'].shape}")
    pad = np.isnan(boxes).any(-1)
    if pad[:, 0].any():
        raise DataError(f"{source}: sample {int(np.argmax(pad[:, 0]))} has no key object (its first box is NaN)")
    ok = boxes[~pad]
    if len(ok) and not ((ok[:, 2] > ok[:, 0]) & (ok[:, 3] > ok[:, 1])).all():
        raise DataError(f"{source}: boxes must be x1, y1, x2, y2 with x1 < x2 and y1 < y2")
    bl = np.where(pad, -1, bl).astype(np.int64)
    base.labels = torch.from_numpy(bl[:, 0].copy())
    base.targets = {"boxes": torch.from_numpy(boxes), "box_labels": torch.from_numpy(bl)}
    return base


def segmentation_from_arrays(arrays: dict[str, np.ndarray], digest: str, source: str,
                             channels: int | None = None) -> Dataset:
    """Images with per-pixel class masks ``masks`` ``(N, H, W)`` (255 = ignore) and ``class_names``.

    A sample's label (for per-class curves and ``--classes``) is the most frequent class in its
    mask other than 0 (background) and 255 (ignore), or 0 when there is none.
    """
    base = images_from_arrays({k: v for k, v in arrays.items() if k != "labels"}, digest, source, channels)
    if "masks" not in arrays:
        return base  # no ground truth: consensus only
    masks = arrays["masks"]
    if masks.shape != (len(base), *base.size):
        raise DataError(f"{source}: 'masks' must be (N, H, W) = {(len(base), *base.size)}, found {masks.shape}")
    if masks.dtype.kind not in "iu" or (masks < 0).any():
        raise DataError(f"{source}: 'masks' must hold class ids (non-negative integers, 255 = ignore), "
                        f"found dtype {masks.dtype}")
    m = masks.astype(np.int64)
    counts = np.stack([(m == k).sum((1, 2)) for k in range(1, max(2, int(m[m != 255].max(initial=0)) + 1))], 1)
    label = np.where(counts.max(1) > 0, counts.argmax(1) + 1, 0)
    base.labels = torch.from_numpy(label.astype(np.int64))
    base.targets = {"masks": torch.from_numpy(m)}
    return base
