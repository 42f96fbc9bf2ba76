"""``nero report``: one self-contained, interactive HTML page over one or more run directories.

The page (``report.html``, no network needed: plotly.js, CSS and data are inline) shows

- a summary table of every model and group of every run;
- the aggregate NERO plot of each group with the models overlaid, for a chosen metric
  and class subset;
- a dimension-reduction view: each sample is a point whose vector is its NERO curve (the
  metric at every orbit element, for one model and group), reduced to 2-D with PCA,
  FastICA, Isomap, t-SNE (and UMAP when ``umap`` is importable), coloured by the mean or
  the variance of the curve. Clicking a point, or stepping through the samples ranked by
  mean or variance, shows that sample's thumbnail and its individual NERO plot for every
  model; choosing an orbit element shows the transformed input and every model's outputs
  there (the rows of ``results.csv``);
- when model names carry an epoch or step number (``ckpt_e5``, ``step-1000``), every
  summary metric drawn against it.

Reductions are computed here, in Python; the page only draws them. Per-sample data are
embedded as base64 little-endian typed arrays to keep the page small. Static copies of
the aggregate plots go to ``figures/`` beside the page.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .errors import NeroError, OptionError, OutputError

#: Dimension reductions, in the order the page offers them.
REDUCTIONS = ("pca", "ica", "isomap", "tsne", "umap")
REDUCTION_NAMES = {"pca": "PCA", "ica": "ICA (FastICA)", "isomap": "Isomap", "tsne": "t-SNE", "umap": "UMAP"}
DEFAULT_MAX_SAMPLES = 2000
THUMB_MAX = 128          # thumbnails are downscaled to at most this many pixels a side
CLOUD_POINTS = 256       # points of a point cloud embedded for the in-browser viewpoint view
TEMPLATE = "report_template.html"

_KEYS = ("model", "sample", "label", "group", "element", "identity")


# ------------------------------------------------------------------------------------------
# Loading run directories


@dataclass
class _Run:
    path: Path
    name: str
    summary: dict[str, Any]
    info: dict[str, Any]
    table: Any  # pandas.DataFrame (results.csv)
    agg: Any  # pandas.DataFrame (summary.csv)
    task: Any
    param_columns: list[str]
    data_key: str = ""
    display: dict[str, str] = field(default_factory=dict)  # model -> display name


def _read_json(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        raise OutputError(f"{path}: cannot read ({exc.strerror}); check the permissions") from None
    except ValueError as exc:
        raise OutputError(f"{path}: not valid JSON ({exc}); the run directory is damaged, rerun 'nero evaluate'") from None
    if not isinstance(obj, dict):
        raise OutputError(f"{path}: expected a JSON object; the run directory is damaged, rerun 'nero evaluate'")
    return obj


def check_run_dir(run_dir: Path) -> None:
    """Refuse (:class:`NeroError`, exit 2) anything but a complete ``nero evaluate`` run directory."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise OutputError(f"{run_dir}: no such directory; pass the --out directory of 'nero evaluate'")
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: not a directory; pass the --out directory of 'nero evaluate'")
    for name in ("summary.json", "results.csv", "run.json"):
        if not (run_dir / name).is_file():
            raise OutputError(f"{run_dir}: no {name}; not a complete nero run directory "
                            f"(rerun 'nero evaluate ... --out {run_dir}')")
    status = _read_json(run_dir / "run.json", run_dir).get("status")
    if status != "complete":
        raise OutputError(f"{run_dir}: run.json status is '{status}', not 'complete'; the run did not finish, "
                        "rerun 'nero evaluate'")


def _load_run(run_dir: Path) -> _Run:
    import pandas as pd

    from .tasks import get_task

    check_run_dir(run_dir)
    info = _read_json(run_dir / "run.json", run_dir)
    summary = _read_json(run_dir / "summary.json", run_dir)
    for key in ("task", "models", "groups", "metrics"):
        if key not in summary:
            raise OutputError(f"{run_dir / 'summary.json'}: no '{key}'; written by an older nero? rerun 'nero evaluate'")
    try:
        task = get_task(str(summary["task"]))
    except NeroError:
        raise OutputError(f"{run_dir / 'summary.json'}: unknown task '{summary['task']}'; written by a newer nero?") from None
    try:
        table = pd.read_csv(run_dir / "results.csv", low_memory=False)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{run_dir / 'results.csv'}: cannot read ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})") from None
    missing = [c for c in _KEYS if c not in table.columns]
    if missing:
        raise OutputError(f"{run_dir / 'results.csv'}: missing column(s) {', '.join(missing)}; "
                        "the run directory is damaged, rerun 'nero evaluate'")
    if table.empty:
        raise OutputError(f"{run_dir / 'results.csv'}: no rows; rerun 'nero evaluate'")
    table["model"] = table["model"].astype(str)
    table["group"] = table["group"].astype(str)
    table["identity"] = table["identity"].astype(str).str.lower().isin(("true", "1", "1.0"))
    cols = list(table.columns)
    first_task_col = next((i for i, c in enumerate(cols) if c in task.columns), len(cols))
    params = [c for c in cols[cols.index("identity") + 1 : first_task_col]]
    agg = None
    if (run_dir / "summary.csv").is_file():
        try:
            agg = pd.read_csv(run_dir / "summary.csv", low_memory=False)
        except (OSError, ValueError):
            agg = None
    if agg is None or not {"model", "group", "element", "class"} <= set(agg.columns):
        from .summary import aggregate

        agg = aggregate(table, params, task.metrics)
    agg["model"] = agg["model"].astype(str)
    agg["group"] = agg["group"].astype(str)
    agg["class"] = agg["class"].astype(str)
    data = info.get("data") or {}
    key = str(data.get("sha256") or data.get("source") or run_dir.resolve())
    return _Run(run_dir, run_dir.name, summary, info, table, agg, task, params, data_key=f"{summary['task']}:{key}")


def _name_runs(runs: list[_Run]) -> None:
    """Unique run names (directory names; the parent is added, then a counter, when they collide)
    and model display names (``run/model`` when a model name occurs in more than one run)."""
    names = [r.path.name or str(r.path) for r in runs]
    if len(set(names)) != len(names):
        names = [f"{r.path.resolve().parent.name}/{r.path.name}" for r in runs]
    seen: dict[str, int] = {}
    for r, n in zip(runs, names):
        seen[n] = seen.get(n, 0) + 1
        r.name = n if seen[n] == 1 else f"{n}-{seen[n]}"
    count: dict[str, int] = {}
    for r in runs:
        for m in _models(r):
            count[m] = count.get(m, 0) + 1
    for r in runs:
        r.display = {m: (m if count[m] == 1 else f"{r.name}/{m}") for m in _models(r)}


def _models(run: _Run) -> list[str]:
    listed = [str(m) for m in run.summary.get("models") or []]
    present = list(dict.fromkeys(run.table["model"]))
    return [m for m in listed if m in set(present)] + [m for m in present if m not in listed]


# ------------------------------------------------------------------------------------------
# Encoding helpers


def _b64(arr: Any, dtype: str) -> str:
    import numpy as np

    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).tobytes()).decode("ascii")


def _round(v: Any, digits: int = 6) -> Any:
    """JSON-safe number rounded to ``digits`` significant digits (None for NaN/inf)."""
    import math

    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return None
    if f == int(f) and abs(f) < 2**53:
        return int(f)
    return float(f"{f:.{digits}g}")


def _rlist(values: Any, digits: int = 6) -> list:
    return [_round(v, digits) for v in values]


def _encode_column(arr: Any) -> dict[str, str]:
    """A results column in the smallest exact type: int8 / int16 when every value is an integer in
    range (the type's minimum marks a missing value), else float32 (NaN marks it)."""
    import numpy as np

    a = np.asarray(arr, dtype=np.float64)
    ok = np.isfinite(a)
    v = a[ok]
    if v.size == 0 or np.all(v == np.round(v)):
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
        for t, (tmin, tmax) in (("i1", (-128, 127)), ("i2", (-32768, 32767))):
            if tmin < lo and hi <= tmax:
                out = np.full(a.shape, tmin, dtype=np.int64)
                out[ok] = v.astype(np.int64)
                return {"t": t, "b": _b64(out, "<" + t if t != "i1" else "i1")}
    return {"t": "f4", "b": _b64(a, "<f4")}


def _png_uri(img: Any) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_thumb(chw: Any) -> tuple[Any, float]:
    """PIL image of a ``(C, H, W)`` array in [0, 1] (first channel if C is not 1, 3 or 4), downscaled
    to :data:`THUMB_MAX`; returns the image and the scale factor."""
    import numpy as np
    from PIL import Image

    a = np.clip(np.nan_to_num(np.asarray(chw, dtype=np.float32)), 0.0, 1.0)
    if a.ndim == 2:
        a = a[None]
    c = a.shape[0]
    u8 = (a * 255.0 + 0.5).astype(np.uint8)
    if c == 3:
        img = Image.fromarray(np.moveaxis(u8, 0, -1), "RGB")
    elif c == 4:
        img = Image.fromarray(np.moveaxis(u8, 0, -1), "RGBA")
    else:
        img = Image.fromarray(u8[0], "L")
    h, w = a.shape[-2:]
    scale = min(1.0, THUMB_MAX / max(h, w))
    if scale < 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return img, scale


def _cloud_unit(points: Any) -> Any:
    import numpy as np

    p = np.asarray(points, dtype=np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return np.zeros((1, 3))
    r = float(np.sqrt((p**2).sum(1)).max()) or 1.0
    return p / r


def camera_matrix() -> Any:
    """The fixed oblique camera of point-cloud views: turn 30 degrees about z, then tilt by 60 degrees
    about x, so the cloud's z axis points up the screen and towards the viewer (like matplotlib's
    default 3-D view). Screen x = row 0, screen y (up) = row 1, depth (towards the viewer) = row 2."""
    import numpy as np

    a, t = np.deg2rad(30.0), np.deg2rad(-60.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    rx = np.array([[1.0, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rx @ rz


def _cloud_thumb(points: Any, size: int = 112) -> Any:
    """An orthographic view of a point cloud through :func:`camera_matrix`, nearer points on top,
    coloured by depth: the same drawing the page uses for rotated clouds."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    p = _cloud_unit(points) @ camera_matrix().T
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    order = np.argsort(p[:, 2])
    half = (size - 4) / 2.0
    xs = np.round(size / 2 + p[order, 0] * half).astype(int)
    ys = np.round(size / 2 - p[order, 1] * half).astype(int)
    cols = (np.asarray(colormaps["viridis"](np.floor((p[order, 2] + 1) / 2 * 9.999) / 9))[:, :3] * 255).astype(np.uint8)
    for i in range(len(order)):  # far to near, 3x3 dots
        img[max(0, ys[i] - 1) : ys[i] + 2, max(0, xs[i] - 1) : xs[i] + 2] = cols[i]
    return Image.fromarray(img, "RGB")


# ------------------------------------------------------------------------------------------
# Dimension reductions


def available_reductions() -> list[str]:
    """The reductions this installation can compute (UMAP only when ``umap`` imports)."""
    out = ["pca", "ica", "isomap", "tsne"]
    try:
        import umap  # noqa: F401

        out.append("umap")
    except Exception:  # noqa: BLE001 - any import failure means no UMAP
        pass
    return out


def parse_reductions(text: str | Sequence[str] | None) -> list[str]:
    """``pca,tsne`` -> ``["pca", "tsne"]``; None or ``all`` -> every available reduction; ``none`` -> []."""
    avail = available_reductions()
    if text is None:
        return avail
    items = [t.strip().lower() for part in ([text] if isinstance(text, str) else text) for t in str(part).split(",")]
    items = [t.replace("-", "").replace("_", "") for t in items if t]
    items = ["tsne" if t == "tsne" else ("ica" if t == "fastica" else t) for t in items]
    if items in (["all"], []):
        return avail
    if items == ["none"]:
        return []
    out: list[str] = []
    for t in items:
        if t not in REDUCTIONS:
            raise OptionError(f"--reduction: unknown method '{t}'; choose from {', '.join(REDUCTIONS)}, all or none")
        if t not in avail:
            raise OptionError("--reduction umap: the 'umap' package is not installed; pip install umap-learn, "
                              "or leave umap out")
        if t not in out:
            out.append(t)
    return out


def reduce_curves(x: Any, method: str, seed: int = 0) -> Any:
    """2-D embedding ``(n, 2)`` of the rows of ``x`` (n samples x G elements) by ``method``.

    Constant columns are dropped first; with fewer than two distinct rows the embedding is
    all zeros. Small sets get smaller neighbourhoods (Isomap, UMAP) and perplexities (t-SNE).
    """
    import warnings

    import numpy as np
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    out = np.zeros((n, 2))
    if n < 3:
        return out
    keep = np.nanstd(x, axis=0) > 1e-12
    x = x[:, keep]
    if x.shape[1] == 0 or len(np.unique(np.round(x, 9), axis=0)) < 2:
        return out
    if x.shape[1] == 1:
        return np.column_stack([x[:, 0] - x[:, 0].mean(), np.zeros(n)])
    # One thread: OpenMP spin-waits make t-SNE many times slower on busy shared cores.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        if method == "pca":
            from sklearn.decomposition import PCA

            y = PCA(n_components=2, random_state=seed).fit_transform(x)
        elif method == "ica":
            from sklearn.decomposition import FastICA

            y = FastICA(n_components=2, random_state=seed, whiten="unit-variance", max_iter=400).fit_transform(x)
        elif method == "isomap":
            from sklearn.manifold import Isomap

            y = Isomap(n_neighbors=max(2, min(10, n - 1)), n_components=2).fit_transform(x)
        elif method == "tsne":
            from sklearn.manifold import TSNE

            y = TSNE(n_components=2, perplexity=float(max(1.0, min(30.0, (n - 1) / 3.0))), init="pca",
                     random_state=seed, max_iter=500).fit_transform(x)
        elif method == "umap":
            import umap

            y = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), random_state=seed).fit_transform(x)
        else:  # pragma: no cover - parse_reductions guards
            raise ValueError(method)
    y = np.asarray(y, dtype=np.float64)
    if y.shape[1] == 1:
        y = np.column_stack([y[:, 0], np.zeros(n)])
    return y[:, :2]


def _encode_coords(y: Any) -> dict[str, Any]:
    """uint16-quantised coordinates (65535 = missing) and the range to undo it."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y).all(axis=1)
    lo = np.nanmin(y[ok], axis=0) if ok.any() else np.zeros(2)
    hi = np.nanmax(y[ok], axis=0) if ok.any() else np.ones(2)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    q = np.full(y.shape, 65535, dtype=np.uint16)
    q[ok] = np.round((y[ok] - lo) / span * 65534).astype(np.uint16)
    return {"lo": _rlist(lo), "hi": _rlist(lo + span), "q": _b64(q, "<u2")}


# ------------------------------------------------------------------------------------------
# The report


def _metric_column(metric: str, columns: Any) -> str | None:
    if metric in columns:
        return metric
    if metric == "accuracy" and "correct" in columns:
        return "correct"
    return None


def _sample_classes(table: Any, class_names: list[str] | None) -> dict[int, tuple[int, str]]:
    """Per sample id: (class id, class name) as summary.csv counts it (label, else reference)."""
    import numpy as np

    first = table.drop_duplicates("sample")
    ids = first["label"].to_numpy()
    if "reference" in first:
        ref = first["reference"].to_numpy()
        ids = np.where(ids >= 0, ids, ref)
    out = {}
    for s, c in zip(first["sample"].to_numpy(), ids):
        try:
            c = int(c)
        except (TypeError, ValueError):
            c = -1
        if c < 0:
            continue
        name = class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
        out[int(s)] = (c, name)
    return out


def _load_dataset(run: _Run, warn: Callable[[str], None]) -> Any:
    data = run.info.get("data") or {}
    source = data.get("source")
    if not source:
        warn(f"{run.path}: run.json names no data source; no thumbnails")
        return None
    try:
        ds = run.task.load_data(str(source), None)
    except Exception as exc:  # noqa: BLE001 - a missing data file only costs the thumbnails
        from .errors import first_line

        warn(f"{run.path}: cannot load the data {source} for thumbnails ({first_line(exc)}); the page shows none")
        return None
    sha = data.get("sha256")
    if sha and getattr(ds, "sha256", None) and ds.sha256 != sha:
        warn(f"{run.path}: the data {source} changed since the run (sha256 differs); no thumbnails")
        return None
    return ds


def _view_elements(run: _Run, label: str) -> tuple[int, dict[str, list], int]:
    """Number of elements, the parameter columns (by element index) and the identity index."""

    rows = run.agg[(run.agg["group"] == label)]
    rows = rows[rows["class"] == "all"] if (rows["class"] == "all").any() else rows
    rows = rows.drop_duplicates("element").sort_values("element")
    g = int(rows["element"].max()) + 1 if len(rows) else 0
    params: dict[str, list] = {}
    for p in run.param_columns:
        if p not in rows or rows[p].isna().all():
            continue
        col = [None] * g
        for e, v in zip(rows["element"].to_numpy(), rows[p].to_numpy()):
            col[int(e)] = str(v) if p == "plane" else _round(v, 9)
        params[p] = col
    t = run.table
    ident = t[(t["group"] == label) & t["identity"]]["element"]
    identity = int(ident.mode().iloc[0]) if len(ident) else 0
    if not 0 <= identity < max(g, 1):
        identity = 0
    return g, params, identity


def _plot_params(kind: str, params: dict[str, list], spec_group: Any) -> list[str]:
    if spec_group is not None:
        cols = [c for c in spec_group.plot_columns if c in params]
        if cols:
            return cols
    default = {"polar": ["angle"], "curve": ["scale"], "mosaic": ["k", "flip", "t"],
               "disks": ["plane", "axis_angle", "rot_angle"], "sphere": ["axis_lon", "axis_lat", "rot_angle"]}
    if kind == "heatmap":
        return ["dx", "dy"] if "dx" in params else ["yaw", "pitch"]
    return [c for c in default.get(kind, []) if c in params] or list(params)[:1]


def _parse_view_spec(spec: str, run: _Run) -> Any:
    try:
        from orbits import parse_spec

        size = (run.info.get("data") or {}).get("image_size")
        image = run.task.name in ("classification", "detection", "flow") and size and len(size) == 2
        return parse_spec(spec, image_size=tuple(int(s) for s in size) if image else None)
    except Exception:  # noqa: BLE001 - a spec this nero cannot parse only costs the transformed view
        return None


def _transform(view: dict[str, Any], parsed: Any, run: _Run, thumb_scale: float) -> dict[str, Any] | None:
    """What the page needs to apply each element to the thumbnail: inverse 3x3 matrices in
    thumbnail pixel coordinates and the action's options (images), or nothing extra (point
    clouds: the quaternion parameter columns are enough)."""
    import numpy as np

    if run.task.name == "pointcloud":
        return {"type": "points"} if all(q in view["params"] for q in ("qw", "qx", "qy", "qz")) else None
    if parsed is None:
        return None
    try:
        import torch

        from orbits import planar_matrices

        group = parsed.group.with_identity()
        if len(group) != view["n_elements"]:
            return None
        # the element order of the table must be the group's: compare the shared parameter columns
        for i, p in enumerate(group.param_names):
            if p in view["params"]:
                a = np.asarray([np.nan if v is None else float(v) for v in view["params"][p]])
                if not np.allclose(a, group.elements[:, i].numpy(), atol=1e-6, equal_nan=True):
                    return None
        for p, vals in getattr(group, "coords", {}).items():
            if p in view["params"] and p != "plane":
                a = np.asarray([np.nan if v is None else float(v) for v in view["params"][p]])
                if not np.allclose(a, np.asarray(vals, dtype=float), atol=1e-6, equal_nan=True):
                    return None
        size = tuple(int(s) for s in run.info["data"]["image_size"])
        inv = torch.linalg.inv(planar_matrices(group, size)).numpy()
        s = np.array([[thumb_scale, 0, 0.5 * thumb_scale - 0.5], [0, thumb_scale, 0.5 * thumb_scale - 0.5], [0, 0, 1.0]])
        inv = s @ inv @ np.linalg.inv(s)
        inv = inv / inv[:, 2:3, 2:3]
        opts = {"interp": "bilinear", "padding": "zeros", "mask": "none", **{k: str(v) for k, v in parsed.action.items()}}
        swap = [bool(v) for v in view["params"].get("t", [0] * len(group))]
        return {"type": "image", "inv": [_rlist(m.reshape(-1), 7) for m in inv], **opts, "swap": swap}
    except Exception:  # noqa: BLE001 - the transformed view is optional
        return None


def _epoch_series(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Models whose names carry an epoch/step number, grouped into series (name with the number
    replaced by '#'); only series with at least two distinct epochs are kept."""
    from .checkpoints import epoch_of

    series: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        ep = epoch_of(e["model"])
        if ep is None:
            continue
        digits = [m for m in re.finditer(r"\d+", e["model"]) if int(m.group()) == ep]
        stem = e["model"]
        if digits:
            m = digits[-1]
            stem = stem[: m.start()] + "#" + stem[m.end():]
        series.setdefault(stem, []).append({**e, "epoch": ep})
    out = []
    for stem, items in series.items():
        epochs = [i["epoch"] for i in items]
        if len(set(epochs)) < 2:
            continue
        if len(set(epochs)) != len(epochs):  # the same epoch twice: one series per run
            by_run: dict[str, list] = {}
            for i in items:
                by_run.setdefault(i["run"], []).append(i)
            for run, its in by_run.items():
                if len({i["epoch"] for i in its}) >= 2:
                    out.append({"name": f"{run}/{stem}", "points": sorted(its, key=lambda i: i["epoch"])})
            continue
        out.append({"name": stem, "points": sorted(items, key=lambda i: i["epoch"])})
    return [{"name": s["name"], "points": [{"epoch": p["epoch"], "entry": p["display"]} for p in s["points"]]} for s in out]


def _summary_table_html(runs: list[_Run]) -> str:
    """Every model x group of every run; best value per group and column in bold."""
    import html

    higher: dict[str, bool] = {}
    for r in runs:
        for k, v in (r.summary.get("higher_is_better") or {}).items():
            higher.setdefault(k, bool(v))
    cols: list[str] = []
    for r in runs:
        for groups in r.summary["metrics"].values():
            for m in groups.values():
                for k, v in m.items():
                    if k not in cols and k not in ("n_samples", "n_elements") and isinstance(v, (int, float)):
                        cols.append(k)
    order = {k: i for i, k in enumerate(higher)}
    cols.sort(key=lambda k: order.get(k, len(order)))
    rows = []
    for r in runs:
        for model, groups in r.summary["metrics"].items():
            for group, m in groups.items():
                rows.append((r, str(model), str(group), m))
    best: dict[tuple[str, str], float] = {}
    for r, model, group, m in rows:
        spec = (r.summary["groups"].get(group) or {}).get("spec", group)
        for c in cols:
            v = m.get(c)
            if isinstance(v, (int, float)) and c in higher:
                key = (f"{r.task.name}|{spec}", c)
                if key not in best or (v > best[key] if higher[c] else v < best[key]):
                    best[key] = v
    head = "".join(f'<th title="{html.escape(c)}: {"higher" if higher.get(c, True) else "lower"} is better">'
                   f'{html.escape(c.replace("_", " "))} {"&uarr;" if higher.get(c, True) else "&darr;"}</th>'
                   for c in cols)
    peers: dict[str, int] = {}
    for r, model, group, m in rows:
        k = f"{r.task.name}|{(r.summary['groups'].get(group) or {}).get('spec', group)}"
        peers[k] = peers.get(k, 0) + 1
    multi = len(runs) > 1
    body = []
    for r, model, group, m in rows:
        spec = (r.summary["groups"].get(group) or {}).get("spec", group)
        cells = []
        for c in cols:
            v = m.get(c)
            if isinstance(v, (int, float)):
                bold = best.get((f"{r.task.name}|{spec}", c)) == v and peers[f"{r.task.name}|{spec}"] > 1
                cells.append(f'<td class="num{" best" if bold else ""}">{v:.4f}</td>')
            else:
                cells.append('<td class="num">&ndash;</td>')
        run_cell = f"<td>{html.escape(r.name)}</td>" if multi else ""
        body.append(f"<tr>{run_cell}<td>{html.escape(r.display.get(model, model))}</td>"
                    f'<td title="{html.escape(spec)}">{html.escape(group)}</td>'
                    f'<td class="num">{m.get("n_samples", "")}</td>{"".join(cells)}</tr>')
    run_head = "<th>run</th>" if multi else ""
    return (f'<table class="summary"><thead><tr>{run_head}<th>model</th><th>group</th><th>samples</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def build_report_data(runs: list[_Run], *, max_samples: int = DEFAULT_MAX_SAMPLES, metrics: Sequence[str] | None = None,
                      reductions: Sequence[str] = ("pca", "ica", "isomap", "tsne"), thumbnails: bool = True, seed: int = 0,
                      warn: Callable[[str], None] = lambda s: None,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The JSON the page reads: views (one per task x group spec), per-sample data, reductions."""
    import numpy as np

    from .plots import metric_info, model_colors

    all_entries: list[dict[str, Any]] = []
    for r in runs:
        for m in _models(r):
            all_entries.append({"display": r.display[m], "run": r.name, "model": m})
    colors = model_colors([e["display"] for e in all_entries])

    # -- data sets: the samples shown (evenly spaced when there are more than max_samples)
    datasets: dict[str, dict[str, Any]] = {}
    loaded: dict[str, Any] = {}
    for r in runs:
        d = datasets.setdefault(r.data_key, {"ids": set(), "runs": [], "task": r.task.name})
        d["ids"].update(int(s) for s in r.table["sample"].unique())
        d["runs"].append(r)
    for key, d in datasets.items():
        ids = np.array(sorted(d["ids"]), dtype=np.int64)
        total = len(ids)
        if total > max_samples:
            ids = ids[np.unique(np.linspace(0, total - 1, max_samples).round().astype(int))]
        d["sample_ids"] = ids
        d["total"] = total
        if thumbnails:
            ds = None
            for r in d["runs"]:
                ds = _load_dataset(r, warn)
                if ds is not None:
                    break
            loaded[key] = ds

    data_json: dict[str, Any] = {}
    for di, (key, d) in enumerate(datasets.items()):
        r0 = d["runs"][0]
        ds = loaded.get(key)
        class_names = getattr(ds, "class_names", None) if ds is not None else None
        classes: dict[int, tuple[int, str]] = {}
        for r in d["runs"]:
            for s, c in _sample_classes(r.table, class_names).items():
                classes.setdefault(s, c)
        labels = {int(s): int(lbl) for s, lbl in r0.table.drop_duplicates("sample")[["sample", "label"]].to_numpy()
                  if not (isinstance(lbl, float) and np.isnan(lbl))}
        names = sorted({c[1] for c in classes.values()}, key=lambda n: (min(c[0] for c in classes.values() if c[1] == n), n))
        entry: dict[str, Any] = {
            "id": f"d{di}", "task": d["task"], "source": (r0.info.get("data") or {}).get("source", ""),
            "samples": [int(s) for s in d["sample_ids"]], "total": int(d["total"]),
            "classes": [names.index(classes[int(s)][1]) if int(s) in classes else -1 for s in d["sample_ids"]],
            "classNames": names, "labels": [labels.get(int(s), -1) for s in d["sample_ids"]],
            "labelNames": class_names or [], "thumbs": None, "clouds": None, "thumbScale": 1.0,
        }
        if ds is not None:
            index = np.asarray(ds.index)
            pos_of = {int(v): i for i, v in enumerate(index)}
            thumbs, clouds, scale = [], [], 1.0
            for s in d["sample_ids"]:
                pos = pos_of.get(int(s))
                if pos is None:
                    thumbs.append(None)
                    clouds.append(None)
                    continue
                x = ds.inputs[pos].numpy()
                if d["task"] == "pointcloud":
                    thumbs.append([_png_uri(_cloud_thumb(x))])
                    p = _cloud_unit(x)
                    p = p[np.unique(np.linspace(0, len(p) - 1, min(CLOUD_POINTS, len(p))).round().astype(int))]
                    clouds.append(_b64(np.clip(np.round(p * 127), -127, 127), "i1"))
                elif d["task"] == "flow":
                    c = x.shape[0] // 2
                    frames = [_image_thumb(x[:c]), _image_thumb(x[c:])]
                    scale = frames[0][1]
                    thumbs.append([_png_uri(f[0]) for f in frames])
                    clouds.append(None)
                else:
                    img, scale = _image_thumb(x)
                    thumbs.append([_png_uri(img)])
                    clouds.append(None)
            entry["thumbs"] = thumbs
            entry["clouds"] = clouds if d["task"] == "pointcloud" else None
            entry["thumbScale"] = scale
        data_json[key] = entry

    # -- views: one per (task, group spec); models of every run that evaluated it are overlaid
    views: list[dict[str, Any]] = []
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    label_count: dict[str, int] = {}
    for r in runs:
        for label, g in r.summary["groups"].items():
            spec = str(g.get("spec", label))
            key = (r.task.name, spec)
            if key not in by_key:
                n, params, identity = _view_elements(r, label)
                if n == 0:
                    continue
                parsed = _parse_view_spec(spec, r)
                kind = str(g.get("plot") or (parsed.group.plot_kind if parsed else "curve"))
                task_metrics = [m for m in r.task.plot_metrics if metrics is None or m in metrics]
                view = {"id": f"v{len(views)}", "label": label, "spec": spec, "task": r.task.name, "kind": kind,
                        "n_elements": n, "params": params, "identity": identity,
                        "plotParams": _plot_params(kind, params, parsed.group if parsed else None),
                        "labels": None, "metrics": task_metrics, "entries": [], "classes": ["all"],
                        "data": data_json[r.data_key]["id"], "_parsed": parsed, "_run": r}
                if parsed is not None:
                    try:
                        grp = parsed.group.with_identity()
                        if len(grp) == n:
                            view["labels"] = grp.labels()
                    except Exception:  # noqa: BLE001
                        pass
                if view["labels"] is None:
                    view["labels"] = [",".join(f"{p}={params[p][e]}" for p in view["plotParams"]) for e in range(n)]
                by_key[key] = view
                views.append(view)
                label_count[label] = label_count.get(label, 0) + 1
            by_key[key]["entries"].append((r, label))
    for v in views:
        if label_count[v["label"]] > 1:
            v["label"] = f"{v['label']} ({v['spec']})"
    if metrics is not None:
        known = {m for v in views for m in v["_run"].task.plot_metrics}
        bad = [m for m in metrics if m not in known]
        if bad:
            raise OptionError(f"--metric {', '.join(bad)}: not a metric of these runs; choose from {', '.join(sorted(known))}")
        if not any(v["metrics"] for v in views):
            raise OptionError("--metric: none of the chosen metrics applies to these runs")
    views = [v for v in views if v["metrics"]]

    n_red = sum(len(v["metrics"]) * sum(len(_models(r)) for r, _ in v["entries"]) for v in views) * len(reductions)
    done = 0
    for v in views:
        d = datasets[v["_run"].data_key]
        ids = d["sample_ids"]  # sorted
        g = v["n_elements"]
        entries_json = []
        classes_seen: list[str] = []
        for r, label in v["entries"]:
            t = r.table[r.table["group"] == label]
            a = r.agg[r.agg["group"] == label]
            for c in a["class"].unique():
                if c != "all" and c not in classes_seen:
                    classes_seen.append(c)
            task_cols = [c for c in r.task.columns if c in t.columns]
            for m in _models(r):
                tm = t[t["model"] == m]
                if tm.empty:
                    continue
                same_data = r.data_key == v["_run"].data_key
                e: dict[str, Any] = {"name": r.display[m], "run": r.name, "model": m, "color": colors[r.display[m]],
                                     "data": data_json[r.data_key]["id"], "agg": {}, "cols": {}, "perSample": {},
                                     "red": {}}
                am = a[a["model"] == m]
                for cls, ac in am.groupby("class", sort=False):
                    curves = {}
                    for metric in v["metrics"]:
                        col = metric if metric in ac else None
                        if col is None:
                            continue
                        arr = np.full(g, np.nan)
                        el = ac["element"].to_numpy().astype(int)
                        ok = (el >= 0) & (el < g)
                        arr[el[ok]] = ac[col].to_numpy(dtype=float)[ok]
                        curves[metric] = _rlist(arr)
                    e["agg"][str(cls)] = {"curves": curves, "n": _round(ac["n"].max()) if "n" in ac else None}
                if same_data:
                    sv = tm["sample"].to_numpy().astype(np.int64)
                    srow = np.clip(np.searchsorted(ids, sv), 0, max(len(ids) - 1, 0))
                    srow = np.where(ids[srow] == sv, srow, -1) if len(ids) else np.full(len(sv), -1)
                    el = tm["element"].to_numpy().astype(int)
                    ok = (srow >= 0) & (el >= 0) & (el < g)
                    S = len(ids)
                    for c in task_cols:
                        arr = np.full((S, g), np.nan, dtype=np.float64)
                        vals = tm[c].to_numpy()
                        if vals.dtype == object:
                            vals = np.where(np.isin(vals, ["True", "true"]), 1.0,
                                            np.where(np.isin(vals, ["False", "false"]), 0.0, vals))
                        arr[srow[ok], el[ok]] = np.asarray(vals[ok], dtype=np.float64)
                        per_sample = np.all((arr == arr[:, :1]) | np.isnan(arr), axis=1).all() and c in ("reference", "consensus")
                        if per_sample:
                            first = np.where(np.isnan(arr), -np.inf, arr).max(axis=1)
                            e["perSample"][c] = _encode_column(np.where(np.isinf(first), np.nan, first))
                        else:
                            e["cols"][c] = _encode_column(arr)
                    for metric in v["metrics"]:
                        col = _metric_column(metric, task_cols)
                        if col is None:
                            continue
                        arr = np.full((S, g), np.nan)
                        arr[srow[ok], el[ok]] = tm[col].to_numpy(dtype=np.float64)[ok]
                        good = np.isfinite(arr).all(axis=1)
                        e["red"][metric] = {}
                        for method in reductions:
                            if progress:
                                done += 1
                                progress(f"{REDUCTION_NAMES[method]} {v['label']} {r.display[m]} {metric} ({done}/{n_red})")
                            coords = np.full((S, 2), np.nan)
                            try:
                                if good.sum():
                                    coords[good] = reduce_curves(arr[good], method, seed=seed)
                            except Exception as exc:  # noqa: BLE001 - one failed reduction must not sink the page
                                from .errors import first_line

                                warn(f"{REDUCTION_NAMES[method]} of {v['label']} / {r.display[m]} / {metric} failed "
                                     f"({first_line(exc)}); left out of the page")
                                continue
                            e["red"][metric][method] = _encode_coords(coords)
                entries_json.append(e)
        v["entries"] = entries_json
        v["classes"] = ["all"] + classes_seen
        v["transform"] = _transform(v, v.pop("_parsed"), v["_run"], data_json[v["_run"].data_key]["thumbScale"])
        v.pop("_run")

    metric_names = sorted({m for v in views for m in v["metrics"]})
    info = {}
    for m in metric_names:
        mi = metric_info(m)
        info[m] = {"label": mi["label"], "range": list(mi["range"]) if mi["range"] else None,
                   "higher": bool(mi["higher_is_better"])}
    summary_rows = []
    higher: dict[str, bool] = {}
    for r in runs:
        higher.update({k: bool(v) for k, v in (r.summary.get("higher_is_better") or {}).items()})
        for model, groups in r.summary["metrics"].items():
            for group, vals in groups.items():
                summary_rows.append({"entry": r.display.get(str(model), str(model)), "run": r.name, "group": str(group),
                                     "spec": (r.summary["groups"].get(group) or {}).get("spec", group),
                                     "values": {k: _round(x) for k, x in vals.items() if isinstance(x, (int, float))}})
    return {
        "views": views,
        "datasets": {d["id"]: d for d in data_json.values()},
        "metricInfo": info,
        "reductions": [{"id": m, "name": REDUCTION_NAMES[m]} for m in reductions],
        "summary": {"rows": summary_rows, "higher": higher},
        "epochs": _epoch_series(all_entries),
        "runs": [{"name": r.name, "dir": str(r.path), "task": r.task.name, "reference": r.summary.get("reference"),
                  "n_samples": r.summary.get("n_samples"), "models": [r.display[m] for m in _models(r)],
                  "data": (r.info.get("data") or {}).get("source"), "command": r.info.get("command"),
                  "finished": r.info.get("finished")} for r in runs],
        "maxSamples": max_samples,
        "camera": _rlist(camera_matrix().reshape(-1), 9),
    }


def _write_figures(runs: list[_Run], data: dict[str, Any], fig_dir: Path, warn: Callable[[str], None]) -> list[Path]:
    """Static aggregate plots (default metric, every sample, models overlaid) and the epoch curves."""
    import pandas as pd

    from .plots import PlotSpec, plot_aggregate

    paths: list[Path] = []
    for v in data["views"]:
        frames = []
        for r in runs:
            for label, g in r.summary["groups"].items():
                if r.task.name == v["task"] and str(g.get("spec", label)) == v["spec"]:
                    a = r.agg[r.agg["group"] == label].copy()
                    a["model"] = a["model"].map(lambda m, r=r: r.display.get(m, m))
                    a["group"] = v["label"]
                    frames.append(a)
        if not frames:
            continue
        agg = pd.concat(frames, ignore_index=True)
        metric = v["metrics"][0]
        stem = "aggregate_" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in v["label"]) + f"_{metric}"
        try:
            spec = PlotSpec(group=v["label"], kind=v["kind"], params=tuple(v["plotParams"]),
                            title=f"{v['label']} ({v['n_elements']} elements)")
            paths += plot_aggregate(agg, spec, metric, [e["name"] for e in v["entries"]], fig_dir, stem=stem)
        except Exception as exc:  # noqa: BLE001 - the static figure is a convenience
            from .errors import first_line

            warn(f"figure for {v['label']} not written ({first_line(exc)})")
    if data["epochs"]:
        paths += _epoch_figure(data, fig_dir)
    return paths


def _epoch_figure(data: dict[str, Any], fig_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    from .plots import save_figure

    rows = data["summary"]["rows"]
    higher = data["summary"]["higher"]
    metric = next((m for m in ("orbit_accuracy", "orbit_iou", "orbit_aee", "equivariance_error") if any(m in r["values"] for r in rows)),
                  None)
    if metric is None:
        return []
    groups = list(dict.fromkeys(r["group"] for r in rows))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for s in data["epochs"]:
        for g in groups:
            pts = [(p["epoch"], next((r["values"].get(metric) for r in rows if r["entry"] == p["entry"] and r["group"] == g), None))
                   for p in s["points"]]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{s['name']} · {g}")
    ax.set_xlabel("epoch / step")
    ax.set_ylabel(f"{metric.replace('_', ' ')} ({'higher' if higher.get(metric, True) else 'lower'} is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, fig_dir, f"epochs_{metric}")


def _render_html(data: dict[str, Any], runs: list[_Run], title: str) -> str:
    import datetime as _dt
    import html
    from importlib import resources

    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise OptionError("nero report needs plotly: pip install 'nero[report]' (or pip install plotly)") from None

    from . import __version__

    template = resources.files("nero_cli").joinpath(TEMPLATE).read_text(encoding="utf-8")
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run_list = "".join(
        f"<li><b>{html.escape(r.name)}</b>: {html.escape(r.task.name)}, {r.summary.get('n_samples', '?')} samples of "
        f"<code>{html.escape(str((r.info.get('data') or {}).get('source', '?')))}</code>, models "
        f"{html.escape(', '.join(r.display[m] for m in _models(r)))}; groups "
        f"{html.escape(', '.join(str(g.get('spec', k)) for k, g in r.summary['groups'].items()))}"
        f"{' (finished ' + html.escape(str(r.info.get('finished'))) + ')' if r.info.get('finished') else ''}</li>"
        for r in runs)
    parts = {
        "TITLE": html.escape(title),
        "GENERATED": html.escape(f"nero {__version__}, {generated}"),
        "RUNS": run_list,
        "SUMMARY_TABLE": _summary_table_html(runs),
    }

    def fill(text: str) -> str:  # one pass: nothing substituted is scanned again
        return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: parts.get(m.group(1), m.group(0)), text)

    head, _, rest = template.partition("/*{{PLOTLY_JS}}*/")
    middle, _, tail = rest.partition("{{DATA_JSON}}")
    return fill(head) + plotly_js + fill(middle) + payload + fill(tail)


def report_run(run_dirs: Sequence[Path | str], out: Path | str, overwrite: bool = False, *,
               max_samples: int = DEFAULT_MAX_SAMPLES, metrics: Sequence[str] | None = None,
               reductions: str | Sequence[str] | None = None, thumbnails: bool = True, figures: bool = True,
               title: str | None = None, seed: int = 0, warn: Callable[[str], None] | None = None,
               progress: Callable[[str], None] | None = None) -> Path:
    """Build the report of ``run_dirs`` in the directory ``out``; return the path of ``report.html``.

    ``out`` is written under a temporary sibling name and renamed into place when complete;
    an existing non-empty ``out`` is replaced only with ``overwrite``. ``max_samples`` caps
    the samples per data set in the reduction view (evenly spaced by id), ``metrics`` limits
    the metrics offered (default: every plot metric of each task), ``reductions`` is a list or
    comma list of :data:`REDUCTIONS` (default: every available one; ``none`` for none).
    """
    from .run import check_out_dir

    if not run_dirs:
        raise OptionError("no RUN_DIR given; pass one or more --out directories of 'nero evaluate'")
    if max_samples < 1:
        raise OptionError(f"--max-samples must be at least 1, got {max_samples}")
    warn = warn or (lambda s: print(f"warning: {s}", file=sys.stderr))
    out = Path(out)
    paths = [Path(p) for p in run_dirs]
    seen: set[Path] = set()
    for p in paths:
        rp = p.resolve()
        if rp in seen:
            raise OptionError(f"{p}: given twice; pass each run directory once")
        seen.add(rp)
        check_run_dir(p)
        ro = out.resolve()
        if ro == rp or rp.is_relative_to(ro):
            raise OutputError(f"--out {out}: would replace the run directory {p}; choose another --out")
    methods = parse_reductions(reductions)
    check_out_dir(out, overwrite)
    runs = [_load_run(p) for p in paths]
    _name_runs(runs)
    data = build_report_data(runs, max_samples=max_samples, metrics=list(metrics) if metrics else None,
                             reductions=methods, thumbnails=thumbnails, seed=seed, warn=warn, progress=progress)
    if not data["views"]:
        raise NeroError("these runs hold no group with rows in results.csv; nothing to report")
    if title is None:
        title = "NERO report: " + ", ".join(r.name for r in runs)
    page = _render_html(data, runs, title)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary directory
        (tmp / "report.html").write_text(page, encoding="utf-8")
        if figures:
            _write_figures(runs, data, tmp / "figures", warn)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "report.html"


# ------------------------------------------------------------------------------------------
# CLI


def add_command(app, guard) -> None:  # noqa: ANN001
    """Register the 'report' command on the typer app."""
    import typer

    @app.command("report")
    def report(
        run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="Run directories written by 'nero evaluate' (several are compared on one page)."),
        out: Path = typer.Option(Path("nero-report"), "--out", "-o", help="Directory to write report.html and figures/ to."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report directory."),
        metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="Metrics to offer (repeatable or comma list; default: every plot metric of the task, e.g. confidence, accuracy, equivariance_error)."),
        reduction: Optional[str] = typer.Option(None, "--reduction", help="Dimension reductions, comma list of pca, ica, isomap, tsne, umap (default: all available; 'none' for none)."),
        max_samples: int = typer.Option(DEFAULT_MAX_SAMPLES, "--max-samples", help="At most this many samples per data set in the reduction view and thumbnails (evenly spaced by id)."),
        no_thumbnails: bool = typer.Option(False, "--no-thumbnails", help="Do not load the data for thumbnails and transformed inputs."),
        no_figures: bool = typer.Option(False, "--no-figures", help="Write report.html only, no static figures/."),
        title: Optional[str] = typer.Option(None, "--title", help="Page title (default: the run names)."),
        seed: int = typer.Option(0, "--seed", help="Random seed of ICA, t-SNE and UMAP."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
    ) -> None:
        """Write an interactive, self-contained HTML report (report.html) of one or more runs."""

        def work() -> None:
            from rich.console import Console

            console = Console(stderr=True)
            metrics = [p.strip() for m in (metric or []) for p in m.split(",") if p.strip()] or None
            status = None
            if not quiet:
                status = console.status("reading runs")
                status.start()

            def progress(text: str) -> None:
                if status is not None:
                    status.update(f"reducing: {text}")

            def warn(text: str) -> None:
                console.print(f"[yellow]warning:[/yellow] {text}", highlight=False, soft_wrap=True)

            try:
                path = report_run(run_dirs, out, overwrite, max_samples=max_samples, metrics=metrics,
                                  reductions=reduction, thumbnails=not no_thumbnails, figures=not no_figures,
                                  title=title, seed=seed, warn=warn, progress=progress)
            finally:
                if status is not None:
                    status.stop()
            if not quiet:
                size = path.stat().st_size / 1e6
                Console().print(f"Report written to [bold]{path}[/bold] ({size:.1f} MB); open it in a browser "
                                f"(file://{path.resolve()})", highlight=False, soft_wrap=True)

        guard(work)


__all__ = ["report_run", "add_command", "build_report_data", "check_run_dir", "reduce_curves", "parse_reductions",
           "available_reductions", "REDUCTIONS"]
