"""Loading evaluation data for image tasks: ``.npz``, ImageFolder layout, ``sample:NAME``.

An ``.npz`` is read through :mod:`nero_cli.npz`: declared shapes first, a load that would not
fit in memory refused with its figure, and with ``--limit`` / ``--classes`` / ``--sample`` only
the leading rows that hold the selected samples inflated (the labels are read first; which
samples are chosen is :mod:`nero_cli.selection`). An image folder is read by
:mod:`nero_cli.folders`; :func:`relabel_folders` maps its class folders to the model's classes.
The data's ``sha256`` is the archive's digest (:meth:`nero_cli.npz.NpzArchive.digest`: every
member's stored bytes), the same whichever rows are read.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import sample_models

from .errors import DataError
from .folders import read_folder
from .npz import NpzArchive, check_memory, open_npz
from .selection import Selection, positions

#: ``.npz`` keys a task reads besides its inputs: per-sample arrays (cut with the inputs) and the class names.
SAMPLE_KEYS = ("labels", "boxes", "box_labels", "masks", "flow")
NAMES_KEY = "class_names"


@dataclass
class Dataset:
    """What a task evaluates: inputs, optional labels and targets, and provenance.

    ``inputs`` are images ``(N, C, H, W)`` float32 in [0, 1] (classification, detection),
    frame pairs ``(N, 2C, H, W)`` (flow) or points ``(N, P, 3)`` (point clouds).
    ``labels`` are class ids ``(N,)`` (for detection: the key object's class).
    ``targets`` hold other per-sample ground truth: ``flow`` ``(N, 2, H, W)``,
    ``boxes`` ``(N, M, 4)`` and ``box_labels`` ``(N, M)``.
    """

    inputs: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str] | None
    source: str
    sha256: str
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # original sample ids
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Whether ``class_names`` name every class (as an ``.npz`` declares them, checked against the
    #: model's classes); False for ImageFolder subfolder names, which may be a subset.
    names_complete: bool = True
    #: An ImageFolder's class folders, sorted; ``labels`` index them until :func:`relabel_folders`
    #: maps them to the model's classes (then ``class_map``: folder -> class id, and how it was found).
    folders: list[str] | None = None
    class_map: dict[str, int] | None = None
    class_map_from: str | None = None

    def __post_init__(self) -> None:
        if len(self.index) != len(self.inputs):
            self.index = np.arange(len(self.inputs), dtype=np.int64)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def images(self) -> torch.Tensor:
        return self.inputs

    @property
    def size(self) -> tuple[int, int]:
        return int(self.inputs.shape[-2]), int(self.inputs.shape[-1])

    def subset(self, keep: np.ndarray) -> "Dataset":
        keep_t = torch.as_tensor(keep, dtype=torch.long)
        return replace(self, inputs=self.inputs[keep_t], labels=None if self.labels is None else self.labels[keep_t],
                       index=self.index[keep], targets={k: v[keep_t] for k, v in self.targets.items()})

    def record(self) -> dict[str, Any]:
        """run.json's ``data`` entries of an ImageFolder: how its folders map to the model's classes."""
        if self.class_map is None:
            return {}
        return {"class_map": dict(self.class_map), "class_map_from": self.class_map_from}


def hash_arrays(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def to_nchw(images: np.ndarray, source: str, channels: int | None = None) -> np.ndarray:
    """``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` to ``(N, C, H, W)``."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim != 4:
        raise DataError(f"{source}: 'images' must be (N, H, W), (N, C, H, W) or (N, H, W, C); found shape {images.shape}")
    first, last = images.shape[1], images.shape[-1]
    if channels is not None:
        if first == channels:
            return images
        if last == channels:
            return np.moveaxis(images, -1, 1)
        raise DataError(f"{source}: the model expects {channels} channel(s), the images have shape {images.shape}")
    if first in (1, 3, 4):
        return images
    if last in (1, 3, 4):
        return np.moveaxis(images, -1, 1)
    raise DataError(f"{source}: cannot tell the channel axis of shape {images.shape}; expected 1, 3 or 4 channels first or last")


def normalise_pixels(images: np.ndarray, source: str) -> np.ndarray:
    """uint8 0..255 or float in [0, 1] to float32 in [0, 1], refusing NaN/inf and other ranges."""
    if images.size == 0:
        raise DataError(f"{source}: no images (the array is empty)")
    if images.dtype == np.uint8:
        return _scaled(images)
    if images.dtype.kind in "iu":
        lo, hi = images.min(), images.max()
        if lo >= 0 and hi <= 255:
            return _scaled(images)
        raise DataError(f"{source}: integer images must be 0..255, found {lo}..{hi}")
    if images.dtype.kind != "f":
        raise DataError(f"{source}: 'images' must be uint8 or float, found dtype {images.dtype}")
    bad = ~np.isfinite(images)
    if bad.any():
        n = int(bad.reshape(len(images), -1).any(1).sum())
        first = int(np.argmax(bad.reshape(len(images), -1).any(1)))
        raise DataError(f"{source}: {n} image(s) contain NaN or inf (first: sample {first}); clean the data first")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        hint = "; divide by 255 or save as uint8" if hi > 1.5 else ""
        raise DataError(f"{source}: float images must be in [0, 1], found {lo:g}..{hi:g}{hint}")
    return np.clip(images, 0.0, 1.0).astype(np.float32, order="C", copy=False)


def _scaled(images: np.ndarray) -> np.ndarray:
    """``images / 255`` as C-contiguous float32, with one float32 array (divided in place)."""
    out = images.astype(np.float32, order="C")
    out /= np.float32(255.0)
    return out


def check_labels(arr: np.ndarray | None, n: int, source: str) -> np.ndarray | None:
    if arr is None:
        return None
    if arr.ndim != 1:
        raise DataError(f"{source}: 'labels' must be (N,), found shape {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{source}: {n} images but {len(arr)} labels; they must match")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{source}: 'labels' must be integer class ids, found non-integer floats")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"{source}: 'labels' must be integer class ids, found dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n and arr.min() < 0:
        raise DataError(f"{source}: labels must be >= 0, found {arr.min()}")
    return arr


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
        _check_fits(archive, key, cut, source)
        arrays = {k: archive.read(k, rows) for k, rows in cut.items()}
        return arrays, archive.digest()


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


def class_names_of(arr: np.ndarray) -> list[str]:
    return [str(c) for c in arr.tolist()]


def images_from_arrays(arrays: dict[str, np.ndarray], digest: str, source: str, channels: int | None = None) -> Dataset:
    """Images ``images`` with optional ``labels`` and ``class_names`` (as in an ``.npz``)."""
    raw = arrays["images"]
    if raw.ndim not in (3, 4):
        raise DataError(f"{source}: 'images' must be (N, H, W), (N, C, H, W) or (N, H, W, C); found shape {raw.shape}")
    if raw.size == 0:
        raise DataError(f"{source}: no images (the array is empty, shape {raw.shape})")
    images = normalise_pixels(to_nchw(raw, source, channels), source)
    labels = check_labels(arrays.get("labels"), len(images), source)
    names = class_names_of(arrays[NAMES_KEY]) if NAMES_KEY in arrays else None
    return Dataset(torch.from_numpy(np.ascontiguousarray(images)),
                     None if labels is None else torch.from_numpy(labels), names, source, digest)


def _load_folder(root: Path, channels: int | None) -> Dataset:
    """An ImageFolder (labels: the class folders' positions, mapped to the model's classes later by
    :func:`relabel_folders`) or a flat folder of images (no labels)."""
    stack, labels, folders = read_folder(root, channels)
    images = torch.from_numpy(stack.astype(np.float32) / 255.0)
    return Dataset(images, None if labels is None else torch.from_numpy(labels), folders, str(root),
                   hash_arrays(stack, labels), names_complete=False, folders=folders)


def load_images(spec: str, channels: int | None = None, limit: int | None = None,
                classes: list[str] | None = None) -> Dataset:
    """Load ``--data``: an ``.npz``, an ImageFolder directory (or a flat folder of images) or
    ``sample:NAME``; with ``limit`` / ``classes``, an ``.npz`` is read only up to the last sample
    they select (see :func:`read_npz`)."""
    if not spec.startswith("sample:") and Path(spec).is_dir():
        return _load_folder(Path(spec), channels)
    return load_task_npz(spec, "images", images_from_arrays, channels, limit, classes, "labels",
                         kinds=("an .npz file", "an image folder"))


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


def load_selected(task: Any, spec: Any, channels: int | None, sel: Selection,
                  relabel: Callable[[Dataset], Dataset] = lambda d: d) -> tuple[Dataset, list[str]]:
    """``--data`` (a string, or a Dataset) for ``task`` cut to ``sel``, and the selection's warnings.

    An ``.npz`` whose stored labels are the task's truth is read only up to the last selected
    sample, its labels read first (:func:`npz_positions`); other data are read (no further than
    ``--limit`` allows), given to ``relabel`` (an ImageFolder's folders to the model's classes),
    then cut.
    """
    if isinstance(spec, Dataset):
        return selected(relabel(spec), sel)
    picked = npz_positions(spec, task.input_key, sel) if task.truth == "labels" else None
    if picked is not None:
        keep, notes = picked
        data = task.load_data(spec, channels, limit=int(keep[-1]) + 1)
        return (data.subset(keep) if len(keep) != len(data) else data), notes
    data = task.load_data(spec, channels, limit=sel.limit, classes=list(sel.classes) or None)
    return selected(relabel(data), sel)


def load_recorded(task: Any, options: dict[str, Any], data_info: dict[str, Any], channels: int | None,
                  class_names: list[str] | None) -> Dataset:
    """The samples of a recorded run (``nero merge``): its ``--data`` cut to its recorded options,
    an ImageFolder's folders mapped to classes as its run.json records."""
    sel = Selection(tuple(options.get("classes") or ()), options.get("limit"), options.get("sample"),
                    options.get("seed") or 0)
    cmap = data_info.get("class_map")
    how = data_info.get("class_map_from") or "folder order"
    return load_selected(task, options["data"], channels, sel,
                         lambda d: relabel_folders(d, cmap, how, class_names) if cmap else d)[0]


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
