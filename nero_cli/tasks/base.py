"""A task is a record: what the model takes and returns, how its output transforms, and what is measured.

Adding a task is one module in this package that builds a :class:`TaskRecord`, one line in
``tasks/__init__.py`` that registers it, and a data loader in :mod:`nero_cli.data`. Gate,
report, doctor, plots and the CLI read the record and need no edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from orbits import OrbitSpec
from orbits.outputs import OutputType

from .. import data as _data
from ..errors import ModelError
from ..measures import Column, Metric, SummaryKey, metric, summary_keys


@dataclass
class Chunk:
    """What a task needs to score one chunk of samples over the whole orbit."""

    identity: int
    reference: str  # "labels" or "consensus"
    labels: torch.Tensor | None
    targets: dict[str, torch.Tensor]
    output: OutputType
    spec: OrbitSpec
    options: dict[str, Any] = field(default_factory=dict)

    def valid(self, device: torch.device) -> torch.Tensor | None:
        """``(G, H, W)`` region where pulled-back outputs saw the image, or None."""
        return self.output.valid(range(len(self.spec.group)), device)


Score = Callable[[torch.Tensor, Chunk], Mapping[str, Any]]


def _ctx(key: str):  # noqa: ANN202
    return lambda c: c[key]


#: Columns the core adds to every task on images or frames (see :mod:`nero_cli.resampling`).
RESAMPLING = (
    metric("coverage", _ctx("coverage"), label="coverage", unit="fraction", higher=True, standard=False,
           doc="share of the input's content (its mass above the background) that the element keeps in frame",
           extra=(("coverage", "orbit"), ("min_coverage", "min"))),
    metric("floor", _ctx("floor"), label="resampling floor", unit="as equivariance_error", higher=False,
           standard=False, range=None,
           doc="the model's equivariance error on the round trip g⁻¹·(g·x) against x: what resampling alone "
               "causes (0 on elements exact on the pixel grid)",
           extra=(("equivariance_error_floor", "orbit"),)),
    metric("excess_equivariance_error", _ctx("excess"), label="equivariance error above the floor",
           unit="as equivariance_error", higher=False, standard=False, range=None,
           doc="max(equivariance_error − floor, 0): the error the model adds to what resampling causes",
           extra=(("excess_equivariance_error", "orbit"), ("max_excess_equivariance_error", "max"))),
)


@dataclass(frozen=True)
class TaskRecord:
    """Everything nero knows about a task, as data."""

    name: str
    doc: str
    #: Input contract, one line (shown by --help, doctor and shape errors).
    contract: str
    #: Kind of input action (``image``, ``frames``, ``points``) and output type (see :mod:`orbits.outputs`).
    input_kind: str
    output: str
    #: ``(arrays, digest, source, channels) -> Dataset``: inputs and truth from arrays, as in an ``.npz``.
    arrays: Callable[[dict, str, str, int | None], Any]
    #: ``(raw model output, n, model name, finite=True) -> tensor``: checks the output contract;
    #: ``finite=False``: all but finiteness, which the caller checks on what it returns
    #: (:meth:`nero_cli.runner.ModelRunner.orbit`, once per chunk; see :func:`all_finite`).
    prepare: Callable[..., torch.Tensor]
    #: ``(pulled-back outputs (G, B, ...), chunk) -> context`` read by the columns' row functions.
    score: Score
    #: Every results column after the parameter columns, in order (metrics among them).
    columns: tuple[Column, ...]
    #: Summarised metrics, in summary order; the first plot metric is the primary metric.
    metrics: tuple[Metric, ...]
    plot_metrics: tuple[str, ...]
    groups: tuple[str, ...]
    default_groups: tuple[str, ...]
    #: Example input shapes (per sample) that doctor tries when a model records none.
    probe_shapes: tuple[tuple[int, ...], ...]
    #: summary.json keys shown in the closing table of ``nero evaluate``.
    table_columns: tuple[str, ...]
    #: Name of the ground truth (``labels`` or a key of ``Dataset.targets``).
    truth: str = "labels"
    #: The ``.npz`` key of the inputs.
    input_key: str = "images"
    #: ``(spec, channels, limit, classes) -> Dataset`` for ``--data`` forms beyond ``.npz`` (image folders);
    #: default: ``.npz`` only. ``limit`` / ``classes`` only bound what is read (see :meth:`load_data`).
    load: Callable[[str, int | None, int | None, list[str] | None], Any] | None = None
    #: ``(first outputs, data, model name, reference)``: checks that need outputs (labels within the
    #: classes) or the reference (``labels`` or ``consensus``).
    check: Callable[[torch.Tensor, Any, str, str], None] | None = None
    #: ``(pulled-back outputs, chunk) -> (G, B, H, W)`` per-pixel error maps, for the mosaic plots.
    pixel_map: Callable[[torch.Tensor, Chunk], torch.Tensor] | None = None
    pixel_map_label: str = ""
    #: Samples per chunk at most (dense outputs are large).
    max_chunk_samples: int | None = None
    #: ``input (C, H, W) or (P, 3) -> thumbnail`` for plots and the report.
    thumbnail: Callable[[np.ndarray], np.ndarray] = lambda x: x

    def __post_init__(self) -> None:
        if self.input_kind in ("image", "frames"):  # resampled inputs: coverage, floor and excess columns
            object.__setattr__(self, "columns", (*self.columns, *RESAMPLING))
            object.__setattr__(self, "metrics", (*self.metrics, *RESAMPLING))

    @property
    def primary(self) -> str:
        return self.plot_metrics[0]

    @property
    def summary_keys(self) -> dict[str, SummaryKey]:
        return summary_keys(self.metrics, self.primary)

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.name} has no metric {name!r}")

    def load_data(self, spec: str, channels: int | None = None, limit: int | None = None,
                  classes: list[str] | None = None) -> Any:
        """``--data`` (a path or ``sample:NAME``) as a Dataset.

        With ``limit`` / ``classes`` an ``.npz`` is inflated only up to the last sample they select
        (``classes`` read the ``labels`` array first when labels are the task's truth; otherwise
        the whole file): apply :func:`nero_cli.data.select` to the result to pick the samples.
        """
        if self.load is not None:
            return self.load(spec, channels, limit, classes)
        label_key = "labels" if self.truth == "labels" else None
        return _data.load_task_npz(spec, self.input_key, self.arrays, channels, limit, classes, label_key)

    def has_truth(self, data: Any) -> bool:
        return data.labels is not None if self.truth == "labels" else self.truth in data.targets

    def make_action(self, spec: OrbitSpec, data: Any) -> Any:
        return spec.input_action(self.input_kind, data.size if self.input_kind != "points" else None)

    def make_output(self, spec: OrbitSpec, data: Any) -> OutputType:
        return spec.output_type(self.output, data.size if self.input_kind != "points" else None)


def rows(t: torch.Tensor) -> np.ndarray:
    """``(G, B)`` -> ``B * G`` values, sample-major (the table's row order)."""
    return t.transpose(0, 1).reshape(-1).cpu().numpy()


def as_tensor_output(out: Any, model_name: str, what: str) -> torch.Tensor:
    """The tensor in a model's output (a tensor, ``{"logits": ...}``, ``.logits`` or a tuple's first)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelError(f"model {model_name}: returned {type(out).__name__}, expected {what}")


def checked(out: torch.Tensor, task: str, model_name: str, n: int, ndim: int, expected: str,
            channels: tuple[int, int] | None = None, what: str = "outputs", finite: bool = True) -> torch.Tensor:
    """``out`` unchanged if it has ``ndim`` dims, ``n`` rows (and ``out.shape[dim] == size`` for
    ``channels=(dim, size)``) and only finite values (``finite=False``: not checked here); a
    one-line ModelError otherwise."""
    bad_channels = channels is not None and (out.ndim <= channels[0] or out.shape[channels[0]] != channels[1])
    if out.ndim != ndim or out.shape[0] != n or bad_channels:
        raise ModelError(f"model {model_name}: output shape {tuple(out.shape)} does not fit {task}; expected {expected}")
    if finite and not all_finite(out):
        raise ModelError(f"model {model_name}: returned NaN or inf {what}; check the model and the input normalisation")
    return out


def all_finite(out: torch.Tensor) -> bool:
    """Whether every value of ``out`` is finite. A NaN or an inf makes the sum NaN or inf, so a
    finite sum settles it with one reduction (a third of ``isfinite(out).all()``'s time); only a
    sum that overflowed is checked value by value."""
    if not (out.is_floating_point() or out.is_complex()) or math.isfinite(abs(out.sum().item())):
        return True
    return bool(torch.isfinite(out).all())


def scored_columns(task: TaskRecord, context: Mapping[str, Any], resampling: bool = True) -> dict[str, np.ndarray]:
    """Every column of ``task`` from one chunk's scoring context, as sample-major arrays
    (``resampling=False``: the task's own columns only, without those of :data:`RESAMPLING`)."""
    return {c.name: rows(c.row(context)) for c in task.columns if resampling or c not in RESAMPLING}


def first_frame(x: np.ndarray) -> np.ndarray:
    """Frame 1 of a frame pair ``(2C, H, W)``."""
    return x[: x.shape[0] // 2]
