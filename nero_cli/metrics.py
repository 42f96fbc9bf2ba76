"""Small metric functions, each with a reference test in ``tests/test_metrics.py``."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """Total-variation distance ``½ Σ_k |p_k − q_k|`` over the last axis, in [0, 1]."""
    return 0.5 * (p - q).abs().sum(dim=-1)


def consensus_class(probs: Tensor) -> Tensor:
    """The orbit's consensus: argmax of the softmax averaged over the orbit.

    ``probs``: ``(G, B, K)``; returns ``(B,)``. Ties go to the lowest class id.
    """
    return probs.mean(dim=0).argmax(dim=-1)


def class_confidence(probs: Tensor, classes: Tensor) -> Tensor:
    """Probability of ``classes`` ``(B,)`` in ``probs`` ``(G, B, K)``: ``(G, B)``."""
    g = probs.shape[0]
    idx = classes.to(probs.device).long()[None, :, None].expand(g, -1, 1)
    return probs.gather(-1, idx).squeeze(-1)
