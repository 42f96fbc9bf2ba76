"""The one model runner: every call nero makes to a user's model goes through :class:`ModelRunner`.

It applies the input normalisation, the device, channels-last and CUDA autocast, and turns a
failing forward pass into one ModelError line. The sweep, doctor, the batch-size autotuner,
the run-time estimate, the repeatability probe and the per-pixel error maps all use it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Sequence

import torch

from . import heap
from .errors import ModelError, OptionError, first_line
from .models import LoadedModel, expected_input
from .tasks.base import all_finite

LONG_RUN_SECONDS = 3600.0
AUTO_BATCH_SIZES = (32, 64, 128, 256, 512, 1024)
#: Bytes of transformed inputs at most per call of the orbit's action (several passes' elements):
#: one call per element cost a tenth of a small CNN's time; a few passes' worth stays in the cache.
ORBIT_BYTES = 2**20
TORCHSCRIPT_PREAMBLE = "The following operation failed in the TorchScript interpreter"
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception)): ?(.*)$")


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise OptionError(f"--device must be auto, cpu or cuda[:N], got '{device}'") from None


def error_line(exc: BaseException) -> tuple[str, str]:
    """The class name and one-line message of a forward failure. TorchScript wraps the real error
    in its own traceback: the line that names it (``builtins.ValueError: ...``) is the message."""
    text = str(exc).strip()
    if text.startswith(TORCHSCRIPT_PREAMBLE):
        lines = [line for line in text.splitlines() if line.strip()]
        match = next((m for m in map(_ERROR_LINE.match, reversed(lines)) if m), None)
        return (match[1], match[2][:300]) if match else (exc.__class__.__name__, lines[-1].strip()[:300])
    return exc.__class__.__name__, first_line(exc)


def _shape_text(dims: Sequence[int | str]) -> str:
    return "(" + ", ".join(map(str, dims)) + ")"


def forward_failure(model: LoadedModel, shape: Sequence[int], exc: BaseException) -> str:
    """The one line for a forward pass that failed: the input shape given, the shape the model
    records when it differs (export signature, sidecar ``input_shape``), and the error."""
    name, message = error_line(exc)
    expects, hint = "", "see the task's input contract in 'nero evaluate --help'"
    recorded = expected_input(model)
    if recorded is not None:
        dims, source = recorded
        wrong = [i for i, (d, n) in enumerate(zip(dims, shape)) if not isinstance(d, str) and d != n]
        if wrong or len(dims) != len(shape):
            expects = f" (it expects {_shape_text(dims)} per its {source})"
        if wrong == [0] and len(dims) == len(shape) and source == "export signature":
            hint = "export it with a dynamic batch dimension (torch.export.Dim)"
    return f"model {model.name}: forward failed on input of shape {_shape_text(shape)}{expects}: {name}: {message}; {hint}"


class ModelRunner:
    """Call one loaded model the way nero always calls it.

    ``normalize`` ``(means, stds)`` overrides the model's own (sidecar) normalisation; both
    apply to image inputs ``(N, C, H, W)`` only.
    """

    def __init__(self, model: LoadedModel, device: str | torch.device = "cpu",
                 normalize: tuple[list[float], list[float]] | None = None, *, amp: bool = False,
                 channels_last: bool = False):
        heap.keep_freed_memory()  # the nero command only (see nero_cli.heap)
        self.model = model
        self.device = resolve_device(device)
        self.amp, self.channels_last = amp, channels_last
        self.normalize = norm = normalize or model.meta.normalize
        self.norm = None
        self.bound: float | None = None  # seconds per input at most, once timed (repeatability_warnings)
        if norm is not None:
            mean = torch.tensor(norm[0], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            std = torch.tensor(norm[1], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            if (std <= 0).any():
                raise OptionError(f"normalisation std must be positive, got {norm[1]}")
            self.norm = (mean, std)

    @property
    def name(self) -> str:
        return self.model.name

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor the model actually receives: on the device, normalised, in its memory format."""
        x = x.to(self.device)
        if self.norm is not None:
            mean, std = self.norm
            if x.ndim != 4:
                raise OptionError("--normalize applies to image inputs (N, C, H, W) only")
            if mean.shape[1] not in (1, x.shape[1]):
                raise OptionError(f"normalisation has {mean.shape[1]} channel(s), the images have {x.shape[1]}")
            x = (x - mean) / std
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def raw(self, x: torch.Tensor) -> Any:
        """The model's output on ``x`` as prepared by :meth:`prepare`, exceptions untouched."""
        if self.amp and x.is_cuda:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = self.model.module(x)
            return out.float() if isinstance(out, torch.Tensor) else out
        return self.model.module(x)

    def __call__(self, x: torch.Tensor) -> Any:
        """The model's output on ``x``; a failure becomes one ModelError line."""
        x = self.prepare(x)
        try:
            return self.raw(x)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model failed on our input
            raise ModelError(forward_failure(self.model, tuple(x.shape), exc)) from None

    def orbit(self, x: torch.Tensor, action: Callable[[torch.Tensor, Sequence[int]], torch.Tensor],
              elements: int | Sequence[int], per_pass: int, prepare: Callable[[Any, int, str], torch.Tensor],
              progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Outputs ``(G, B, ...)`` on the orbit of ``x`` ``(B, ...)`` (``elements``: a count, for the
        whole grid, or the element indices), ``per_pass`` elements per forward pass, each checked
        by the task's ``prepare``."""
        b = x.shape[0]
        todo = list(range(elements)) if isinstance(elements, int) else list(elements)
        # the action transforms as many passes' elements at once as fit in ORBIT_BYTES (one call
        # per element cost a tenth of a small CNN's time); each element's images are the same
        span = per_pass * max(1, ORBIT_BYTES // max(1, x.numel() * x.element_size() * per_pass))
        outs = []
        with torch.inference_mode():
            for s0 in range(0, len(todo), span):
                xs = action(x, todo[s0 : s0 + span])
                for e0 in range(0, xs.shape[0], per_pass):
                    # a slice that starts off a 64-byte boundary gets its own buffer: an unaligned
                    # start changes the rounding of some kernels (MKL's float32 matmul), hence the
                    # results; torch aligns every buffer it allocates to 64 bytes
                    xb = xs[e0 : e0 + per_pass]
                    if xb.data_ptr() % 64:
                        xb = xb.clone()
                    n = xb.shape[0] * b
                    outs.append(prepare(self(xb.reshape(n, *xb.shape[2:])), n, self.name, finite=False))
                    if progress:
                        progress(n)
                del xs
            out = torch.cat(outs, 0)
            # NaN and inf once per chunk (per pass, the check cost a tenth of a small CNN's overhead)
            if not all_finite(out):
                for o in outs:  # the task's own line for the first pass with one
                    prepare(o, o.shape[0], self.name)
                raise ModelError(f"model {self.name}: returned NaN or inf outputs")
        return out.reshape(len(todo), b, *out.shape[1:])


def _tensor(v: Any) -> torch.Tensor | None:
    return v if isinstance(v, torch.Tensor) else None


def repeatability_warnings(runners: Sequence[ModelRunner], x: torch.Tensor) -> list[str]:
    """Warn about models whose outputs differ between two identical calls (dropout left active,
    random ops): their NERO plots mix the symmetry with noise. The second call is timed: each
    runner's ``bound`` is then an upper bound of its seconds per input in batches (see
    :func:`seconds_per_input`)."""
    out = []
    for r in runners:
        try:
            with torch.inference_mode():
                a = _tensor(r(x))
                t = time.perf_counter()
                b = _tensor(r(x))
                if x.is_cuda:
                    torch.cuda.synchronize()
                r.bound = (time.perf_counter() - t) / max(1, len(x))
        except Exception:  # noqa: BLE001 - the sweep reports a failing model with its own message
            continue
        if a is not None and b is not None and a.shape == b.shape and not torch.equal(a, b):
            diff = float((a.float() - b.float()).abs().max())
            out.append(f"model {r.name}: outputs differ between two identical calls (max difference {diff:.3g}); "
                       "dropout or another random layer is active, so results are not reproducible")
    return out


def seconds_per_input(runners: Sequence[ModelRunner], one: torch.Tensor, batch: int,
                      within: float | None = None) -> float:
    """Seconds per input of all models together, from one timed pass of ``batch`` copies of
    ``one`` after a warm-up (0 for a model that fails: the sweep reports it properly).
    ``within``: a number of seconds per input; when the runners' ``bound`` (timed on a few inputs,
    where a model is at its slowest per input) together stay under it, that bound is returned
    untimed (a small sweep need not pay two more forward passes to learn it is short)."""
    bounds = [getattr(r, "bound", None) for r in runners]
    if within is not None and None not in bounds and sum(bounds) <= within:  # type: ignore[arg-type]
        return float(sum(bounds))  # type: ignore[arg-type]
    x = one.expand(batch, *one.shape[1:]).contiguous()
    total = 0.0
    for r in runners:
        with torch.inference_mode():
            try:
                r(x)  # warm-up
                t = time.perf_counter()
                r(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                total += (time.perf_counter() - t) / batch
            except ModelError:
                continue
    return total


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in str(exc).lower()


def autotune_batch_size(runners: Sequence[ModelRunner], one: torch.Tensor) -> int:
    """Time one forward pass of every model at each size of :data:`AUTO_BATCH_SIZES` and keep
    the fastest per input; a size that runs out of memory ends the search (the previous size is kept)."""
    best, best_rate = AUTO_BATCH_SIZES[0], 0.0
    for size in AUTO_BATCH_SIZES:
        x = one.expand(size, *one.shape[1:]).contiguous()
        try:
            with torch.inference_mode():
                for r in runners:
                    r.raw(r.prepare(x))  # warm-up
                t = time.perf_counter()
                for r in runners:
                    r.raw(r.prepare(x))
                if x.is_cuda:
                    torch.cuda.synchronize()
                rate = size / max(time.perf_counter() - t, 1e-9)
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                if x.is_cuda:
                    torch.cuda.empty_cache()
                break  # back off: keep the largest size that fitted
            raise
        if rate > best_rate * 1.05:  # a larger batch must be clearly faster to win
            best, best_rate = size, rate
    return best


__all__ = ["ModelRunner", "error_line", "forward_failure", "resolve_device", "repeatability_warnings",
           "seconds_per_input", "autotune_batch_size", "LONG_RUN_SECONDS", "AUTO_BATCH_SIZES"]
