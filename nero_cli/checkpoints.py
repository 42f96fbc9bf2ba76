"""Checkpoint sweeps: expanding globs and ordering checkpoints by epoch or step."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from .errors import ModelError

_EPOCH = re.compile(r"(?:^|[^a-z])(?:epoch|ep|step|iter|it|e|s)[-_=]?(\d+)", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def epoch_of(name: str) -> int | None:
    """The epoch or step number a checkpoint name carries, or None.

    ``epoch_12``, ``ep3``, ``step-1000``, ``model.e7`` name it explicitly; otherwise the last
    number in the file stem counts (``ckpt_0005.pt`` -> 5).
    """
    stem = Path(name).name
    for suffix in (".safetensors", ".pt2", ".pth", ".pt", ".ckpt", ".ts"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    m = _EPOCH.findall(stem)
    if m:
        return int(m[-1])
    m2 = _LAST_NUMBER.search(stem)
    return int(m2.group(1)) if m2 else None


def expand_models(args: list[str]) -> list[str]:
    """Expand glob patterns among MODEL arguments; a glob's matches are ordered by epoch
    (then name). Non-glob arguments pass through unchanged, in order."""
    out: list[str] = []
    for a in args:
        if any(ch in a for ch in "*?[") and not a.startswith("sample:"):
            hits = sorted(glob.glob(a))
            hits = [h for h in hits if not h.endswith(".json")]
            if not hits:
                raise ModelError(f"{a}: the pattern matches no checkpoint; check the path")
            hits.sort(key=lambda h: (epoch_of(h) is None, epoch_of(h) or 0, h))
            out.extend(hits)
        else:
            out.append(a)
    return out
