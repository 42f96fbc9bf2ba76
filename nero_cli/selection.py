"""Which samples a run evaluates: ``--classes``, then ``--limit`` (the first N) or ``--sample`` (a
stratified random N); and which of the model's classes an ImageFolder's folders are.

Everything here works on label arrays (positions into the data), so the same choice is made on
an ``.npz``'s labels before its inputs are read (:func:`nero_cli.data.npz_positions`) and on a
loaded :class:`~nero_cli.data.Dataset` (:func:`nero_cli.data.select`).

``--sample N`` with ``--seed S`` draws N samples without replacement: per class in proportion to
its share of the (``--classes``-selected) data, by largest remainder, and at least one of every
class when N is no smaller than the number of classes; classes tied for a remainder (or as the
donor of a class's one sample) are ordered at random by a second generator,
``numpy.random.default_rng([S, 1])``, so no class is favoured for coming first; each class's
samples are drawn with one ``numpy.random.default_rng(S)`` in class order, and the result is
sorted by original index, so a seed gives the same subset on every machine. Without labels it
is a plain random subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import DataError, OptionError

#: How many class names a message lists before it says "...".
_LISTED = 8


@dataclass(frozen=True)
class Selection:
    """The samples asked for: ``classes`` (ids or names), then ``limit`` or ``sample`` (with ``seed``)."""

    classes: tuple[str, ...] = ()
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    #: Whether the command offers ``--sample`` (its ``--limit`` warning suggests it only then).
    can_sample: bool = True

    def __post_init__(self) -> None:
        for flag, value in (("--limit", self.limit), ("--sample", self.sample)):
            if value is not None and value <= 0:
                raise OptionError(f"{flag} must be a positive number of samples, got {value}")
        if self.sample is not None and self.seed < 0:  # numpy's generators take no negative seed
            raise OptionError(f"--seed must be 0 or more for --sample, got {self.seed}")
        if self.limit is not None and self.sample is not None:
            raise OptionError("--limit and --sample both choose the samples; give one (--sample N for a "
                              "stratified random subset, --limit N for the first N)")

    @property
    def everything(self) -> bool:
        return not self.classes and self.limit is None and self.sample is None

    def record(self, labelled: bool) -> dict[str, Any] | None:
        """run.json's ``data.selection``: how the samples were chosen (None: all of them)."""
        if self.everything:
            return None
        how = "first" if self.sample is None else ("stratified" if labelled else "random")
        out: dict[str, Any] = {"method": how, "classes": list(self.classes) or None}
        if self.sample is not None:
            out.update(sample=self.sample, seed=self.seed)
        else:
            out["limit"] = self.limit
        return out


def class_ids(classes: Sequence[str], class_names: Sequence[str] | None, held: np.ndarray | None = None) -> list[int]:
    """``--classes`` entries (names or ids) as class ids (``held``: the label ids of the data, for messages)."""
    ids = []
    for c in classes:
        if class_names and c in class_names:
            ids.append(list(class_names).index(c))
        else:
            try:
                ids.append(int(c))
            except ValueError:
                if class_names:
                    raise DataError(f"--classes: unknown class '{c}'; known: {', '.join(class_names)}") from None
                known = held is not None and len(held) > 0
                there = f" (the labels hold ids {_names(held, None)})" if known else ""
                example = ",".join(str(i) for i in held[:2].tolist()) if known else "3,5"
                raise DataError(f"--classes: unknown class '{c}': the data have no class names, so --classes "
                                f"takes class ids{there}, e.g. --classes {example}") from None
    return ids


def class_rows(labels: np.ndarray, classes: Sequence[str], class_names: Sequence[str] | None,
               source: str) -> np.ndarray:
    """Indices of the samples whose label is one of ``classes`` (ids or names)."""
    keep = np.flatnonzero(np.isin(labels, class_ids(classes, class_names, np.unique(labels).astype(np.int64))))
    if len(keep) == 0:
        raise DataError(f"{source}: no samples of class(es) {', '.join(classes)}")
    return keep


def quotas(counts: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Samples per class for a stratified draw of ``n`` from classes of ``counts``: proportional by
    largest remainder (ties to the larger class, then in an order drawn at random for ``seed``),
    then at least one per class when ``n`` allows, taken from the classes furthest above their
    proportional share (ties in the same random order)."""
    ideal = n * counts / counts.sum()
    quota = np.floor(ideal).astype(np.int64)
    rank = np.random.default_rng([seed, 1]).permutation(len(counts))  # the tie order
    order = np.lexsort((rank, -counts, -(ideal - quota)))
    quota[order[: n - int(quota.sum())]] += 1
    if n >= len(counts):
        for c in np.flatnonzero(quota == 0):
            donors = np.flatnonzero(quota >= 2)
            quota[donors[np.lexsort((rank[donors], -(quota - ideal)[donors]))[0]]] -= 1
            quota[c] = 1
    return quota


def stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of a stratified ``--sample n`` draw from ``labels``, sorted."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    picks = [rng.choice(np.flatnonzero(inverse == c), int(q), replace=False)
             for c, q in enumerate(quotas(counts, n, seed))]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def random_positions(size: int, n: int, seed: int) -> np.ndarray:
    """Positions of a plain random ``--sample n`` of ``size`` unlabelled samples, sorted."""
    if n >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, n, replace=False)).astype(np.int64)


def _names(ids: np.ndarray, class_names: Sequence[str] | None) -> str:
    shown = [class_names[i] if class_names and 0 <= i < len(class_names) else str(i) for i in ids.tolist()]
    return ", ".join(shown[:_LISTED]) + (", ..." if len(shown) > _LISTED else "")


def limit_warning(labels: np.ndarray, limit: int, class_names: Sequence[str] | None,
                  can_sample: bool = True) -> str | None:
    """One line when the first ``limit`` of ``labels`` miss classes that ``labels`` hold, suggesting
    ``--sample`` where the command has it (``can_sample``)."""
    held, covered = np.unique(labels), np.unique(labels[:limit])
    if len(covered) == len(held):
        return None
    word = "class" if len(covered) == 1 else "classes"
    advice = (f"; use --sample {limit} for a stratified subset" if can_sample else
              f" (the first {limit} samples in file order); a larger --limit reaches more classes")
    return f"--limit {limit} covers {word} {_names(covered.astype(np.int64), class_names)} of {len(held)}{advice}"


def positions(labels: np.ndarray | None, size: int, sel: Selection, class_names: Sequence[str] | None,
              source: str) -> tuple[np.ndarray, list[str]]:
    """The positions ``sel`` picks among ``size`` samples of ``labels``, sorted, and its warnings.
    Without ``--classes`` and labels, only the picked positions are made (``size`` may be huge)."""
    pool: np.ndarray | None = None  # the candidates' positions; None: all of them
    if sel.classes:
        if labels is None:
            raise DataError(f"{source}: --classes needs labels, and the data has none")
        pool = class_rows(labels, sel.classes, class_names, source)
    n = size if pool is None else len(pool)
    pool_labels = None if labels is None else (labels if pool is None else labels[pool])
    notes: list[str] = []
    if sel.limit is not None:
        pick = np.arange(min(sel.limit, n))
        note = limit_warning(pool_labels, sel.limit, class_names, sel.can_sample) if pool_labels is not None else None
        notes += [note] if note else []
    elif sel.sample is not None:
        if sel.sample > n:
            notes.append(f"--sample {sel.sample} is more than the {n} samples there are; evaluating all of them")
        pick = (stratified(pool_labels, sel.sample, sel.seed) if pool_labels is not None
                else random_positions(n, sel.sample, sel.seed))
    else:
        pick = np.arange(n)
    return (pick if pool is None else pool[pick]), notes


# -- ImageFolder folders as the model's classes ----------------------------------------------------


def folder_classes(folders: Sequence[str], class_names: Sequence[str] | None, n_classes: int | None,
                   source: str) -> tuple[dict[str, int], str]:
    """Each class folder's class id, and how it was found: by the model's ``class_names``; else by
    the folder names when all are integers (below ``n_classes`` when known); else by sorted order
    (the folders' positions, as torchvision's ImageFolder). A folder the model does not know is a
    DataError naming it."""
    if class_names:
        index = {name: i for i, name in enumerate(class_names)}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise DataError(f"{source}: folder '{unknown[0]}' is not one of the model's classes "
                            f"({_names(np.arange(len(class_names)), class_names)}); rename the folder, or give the "
                            "model's classes with --class-names")
        return {f: index[f] for f in folders}, "class names"
    if all(f.isdigit() for f in folders):
        bad = [f for f in folders if n_classes is not None and int(f) >= n_classes]
        if bad:
            raise DataError(f"{source}: folder '{bad[0]}' is not one of the model's classes (it has {n_classes}: "
                            f"0..{n_classes - 1}); rename the folder, or give the model's classes with --class-names")
        return {f: int(f) for f in folders}, "integer folder names"
    return {f: i for i, f in enumerate(folders)}, "folder order"


def check_class_names(names: Sequence[str]) -> list[str] | None:
    """``--class-names``: distinct, non-empty names (None when not given)."""
    names = [n.strip() for n in names]
    if not names:
        return None
    if any(not n for n in names) or len(set(names)) != len(names):
        raise OptionError(f"--class-names needs distinct, non-empty names, one per class in the model's order; "
                          f"got {','.join(names)}")
    return names
