"""Short, stable names of a run's plot files.

A group's files are named by its *slug*: the group's name, then the value of each of its grid
options that takes a word from a fixed list (``viewpoint-planes``, ``viewpoint-sphere``,
``perspective-object``, ``shift-x``); numbers never enter a name. Two groups of one run with
the same slug (``rotation:step=15`` and ``rotation:step=30``) are told apart by their order
in the run: ``rotation``, ``rotation-2``. The full spec of every group stays in ``run.json``
(``record.plots[label].spec``) and in each file's metadata (see :func:`nero_cli.plots.save_figure`).

Files of a group (``<slug>`` as above, ``<metric>`` a metric name such as ``confidence``):

* ``<slug>_<metric>.png`` / ``.svg``: the aggregate plot;
* ``<slug>_<metric>_sample-<id>``: the individual plot of one sample;
* ``<slug>_error-maps_sample-<id>``: the per-pixel error maps of one sample (flow, segmentation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orbits.spec import REGISTRY

from .plots import safe_stem


def group_slug(spec: str) -> str:
    """The slug of one group spec: its name and the words of its fixed-choice grid options."""
    name, _, body = spec.partition(":")
    name = name.strip().lower()
    values = dict(part.strip().split("=", 1) for part in body.split(",") if "=" in part)
    words = [name]
    entry = REGISTRY.get(name)
    if entry is not None:
        words += [values[o.name].strip() for o in entry.cls.options if o.choices and o.name in values]
    return safe_stem("-".join(words).replace("_", "-"))


def group_slugs(plots: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Per group label of a run record's ``plots``: its slug, made unique by order (``-2``, ``-3`` ...)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label, info in plots.items():
        base = group_slug(str(info.get("spec") or label))
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        out[label] = slug
    return out


def aggregate_stem(slug: str, metric: str) -> str:
    return f"{slug}_{metric}"


def sample_stem(slug: str, metric: str, sample: int) -> str:
    return f"{slug}_{metric}_sample-{sample}"


def error_maps_stem(slug: str, sample: int) -> str:
    return f"{slug}_error-maps_sample-{sample}"


__all__ = ["group_slug", "group_slugs", "aggregate_stem", "sample_stem", "error_maps_stem"]
