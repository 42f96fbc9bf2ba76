"""What ``nero report`` embeds besides tables: compact encodings, thumbnails, point-cloud views
and the 2-D reductions of the per-sample NERO curves.

Per-sample data go into the page as base64 little-endian typed arrays; thumbnails as PNG data
URIs, downscaled to at most :data:`THUMB_MAX` pixels a side; point clouds as int8 coordinates
drawn in the browser through :func:`camera_matrix`. Reductions are computed here; the page
only draws them.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image

from .errors import OptionError

try:  # scikit-learn is one of the optional nero[report] dependencies
    from sklearn.decomposition import PCA, FastICA
    from sklearn.manifold import TSNE, Isomap
    from threadpoolctl import threadpool_limits
    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - depends on the installation
    HAVE_SKLEARN = False
try:  # UMAP is optional: any import failure means no UMAP
    import umap
except Exception:  # noqa: BLE001
    umap = None

#: Dimension reductions, in the order the page offers them.
REDUCTIONS = ("pca", "ica", "isomap", "tsne", "umap")
REDUCTION_NAMES = {"pca": "PCA", "ica": "ICA (FastICA)", "isomap": "Isomap", "tsne": "t-SNE", "umap": "UMAP"}
THUMB_MAX = 128          # thumbnails are downscaled to at most this many pixels a side
CLOUD_POINTS = 256       # points of a point cloud embedded for the in-browser viewpoint view
CLOUD_THUMB = 112        # side of a point-cloud thumbnail in pixels


# ------------------------------------------------------------------------------------------
# Encodings


def b64(arr: Any, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).tobytes()).decode("ascii")


def rounded(v: Any, digits: int = 6) -> Any:
    """JSON-safe number rounded to ``digits`` significant digits (None for NaN/inf)."""
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


def rounded_list(values: Any, digits: int = 6) -> list:
    return [rounded(v, digits) for v in values]


def encode_column(arr: Any) -> dict[str, str]:
    """A results column in the smallest exact type: int8 / int16 when every value is an integer in
    range (the type's minimum marks a missing value), else float32 (NaN marks it)."""
    a = np.asarray(arr, dtype=np.float64)
    ok = np.isfinite(a)
    v = a[ok]
    if v.size == 0 or np.all(v == np.round(v)):
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
        for t, (tmin, tmax) in (("i1", (-128, 127)), ("i2", (-32768, 32767))):
            if tmin < lo and hi <= tmax:
                out = np.full(a.shape, tmin, dtype=np.int64)
                out[ok] = v.astype(np.int64)
                return {"t": t, "b": b64(out, "<" + t if t != "i1" else "i1")}
    return {"t": "f4", "b": b64(a, "<f4")}


def encode_coords(y: Any) -> dict[str, Any]:
    """uint16-quantised coordinates (65535 = missing) and the range to undo it."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y).all(axis=1)
    lo = np.nanmin(y[ok], axis=0) if ok.any() else np.zeros(2)
    hi = np.nanmax(y[ok], axis=0) if ok.any() else np.ones(2)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    q = np.full(y.shape, 65535, dtype=np.uint16)
    q[ok] = np.round((y[ok] - lo) / span * 65534).astype(np.uint16)
    return {"lo": rounded_list(lo), "hi": rounded_list(lo + span), "q": b64(q, "<u2")}


# ------------------------------------------------------------------------------------------
# Thumbnails and point clouds


def png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_thumb(chw: Any) -> tuple[Image.Image, float]:
    """PIL image of a ``(C, H, W)`` array in [0, 1] (first channel if C is not 1, 3 or 4), downscaled
    to :data:`THUMB_MAX`; returns the image and the scale factor."""
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


def cloud_unit(points: Any) -> np.ndarray:
    """The finite points of a cloud, scaled into the unit ball."""
    p = np.asarray(points, dtype=np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return np.zeros((1, 3))
    r = float(np.sqrt((p**2).sum(1)).max()) or 1.0
    return p / r


def camera_matrix() -> np.ndarray:
    """The fixed oblique camera of point-cloud views: turn 30 degrees about z, then tilt by 60 degrees
    about x, so the cloud's z axis points up the screen and towards the viewer (like matplotlib's
    default 3-D view). Screen x = row 0, screen y (up) = row 1, depth (towards the viewer) = row 2."""
    a, t = np.deg2rad(30.0), np.deg2rad(-60.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    rx = np.array([[1.0, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rx @ rz


def cloud_thumb(points: Any, size: int = CLOUD_THUMB) -> Image.Image:
    """An orthographic view of a point cloud through :func:`camera_matrix`, nearer points on top,
    coloured by depth: the same drawing the page uses for rotated clouds."""
    p = cloud_unit(points) @ camera_matrix().T
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    order = np.argsort(p[:, 2])
    half = (size - 4) / 2.0
    xs = np.round(size / 2 + p[order, 0] * half).astype(int)
    ys = np.round(size / 2 - p[order, 1] * half).astype(int)
    cols = (np.asarray(colormaps["viridis"](np.floor((p[order, 2] + 1) / 2 * 9.999) / 9))[:, :3] * 255).astype(np.uint8)
    for i in range(len(order)):  # far to near, 3x3 dots
        img[max(0, ys[i] - 1) : ys[i] + 2, max(0, xs[i] - 1) : xs[i] + 2] = cols[i]
    return Image.fromarray(img, "RGB")


def cloud_points(points: Any) -> str:
    """At most :data:`CLOUD_POINTS` points of a cloud (evenly spaced), unit ball as int8 x 127."""
    p = cloud_unit(points)
    p = p[np.unique(np.linspace(0, len(p) - 1, min(CLOUD_POINTS, len(p))).round().astype(int))]
    return b64(np.clip(np.round(p * 127), -127, 127), "i1")


def sample_media(x: np.ndarray, input_kind: str) -> tuple[list[str], str | None, float | None]:
    """Thumbnail data URIs of one input (both frames of a frame pair), its embedded cloud (points)
    and the thumbnail scale (None for point clouds)."""
    if input_kind == "points":
        return [png_uri(cloud_thumb(x))], cloud_points(x), None
    if input_kind == "frames":
        c = x.shape[0] // 2
        frames = [image_thumb(x[:c]), image_thumb(x[c:])]
        return [png_uri(f[0]) for f in frames], None, frames[0][1]
    img, scale = image_thumb(x)
    return [png_uri(img)], None, scale


# ------------------------------------------------------------------------------------------
# Dimension reductions


def available_reductions() -> list[str]:
    """The reductions this installation can compute (UMAP only when ``umap`` imports)."""
    if not HAVE_SKLEARN:
        return []
    return ["pca", "ica", "isomap", "tsne"] + (["umap"] if umap is not None else [])


def parse_reductions(text: str | Sequence[str] | None) -> list[str]:
    """``pca,tsne`` -> ``["pca", "tsne"]``; None or ``all`` -> every available reduction; ``none`` -> []."""
    avail = available_reductions()
    if text is None:
        return avail
    items = [t.strip().lower() for part in ([text] if isinstance(text, str) else text) for t in str(part).split(",")]
    items = [t.replace("-", "").replace("_", "") for t in items if t]
    items = ["ica" if t == "fastica" else t for t in items]
    if items in (["all"], []):
        return avail
    if items == ["none"]:
        return []
    out: list[str] = []
    for t in items:
        if t not in REDUCTIONS:
            raise OptionError(f"--reduction: unknown method '{t}'; choose from {', '.join(REDUCTIONS)}, all or none")
        if t not in avail and not HAVE_SKLEARN:
            raise OptionError(f"--reduction {t}: scikit-learn is not installed; pip install 'nero[report]' "
                              "(or pip install scikit-learn), or pass --reduction none")
        if t not in avail:
            raise OptionError("--reduction umap: the 'umap' package is not installed; pip install umap-learn, "
                              "or leave umap out")
        if t not in out:
            out.append(t)
    return out


def _reducer(method: str, n: int, seed: int) -> Any:
    """The estimator of ``method`` for ``n`` samples: smaller sets get smaller neighbourhoods and perplexities."""
    makers: dict[str, Callable[[], Any]] = {
        "pca": lambda: PCA(n_components=2, random_state=seed),
        "ica": lambda: FastICA(n_components=2, random_state=seed, whiten="unit-variance", max_iter=400),
        "isomap": lambda: Isomap(n_neighbors=max(2, min(10, n - 1)), n_components=2),
        "tsne": lambda: TSNE(n_components=2, perplexity=float(max(1.0, min(30.0, (n - 1) / 3.0))), init="pca",
                             random_state=seed, max_iter=500),
        "umap": lambda: umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), random_state=seed),
    }
    if method not in makers:  # pragma: no cover - parse_reductions guards
        raise ValueError(method)
    return makers[method]()


def reduce_curves(x: Any, method: str, seed: int = 0) -> np.ndarray:
    """2-D embedding ``(n, 2)`` of the rows of ``x`` (n samples x G elements) by ``method``.

    Constant columns are dropped first; with fewer than two distinct rows the embedding is
    all zeros. Small sets get smaller neighbourhoods (Isomap, UMAP) and perplexities (t-SNE).
    """
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
        y = _reducer(method, n, seed).fit_transform(x)
    y = np.asarray(y, dtype=np.float64)
    if y.shape[1] == 1:
        y = np.column_stack([y[:, 0], np.zeros(n)])
    return y[:, :2]


__all__ = ["REDUCTIONS", "REDUCTION_NAMES", "available_reductions", "parse_reductions", "reduce_curves",
           "encode_column", "encode_coords", "rounded", "rounded_list", "b64", "camera_matrix", "sample_media"]
