"""Point-cloud sample model architectures (torch only).

* :class:`PointNet` -- a small PointNet classifier: a shared per-point MLP
  ``3 -> 64 -> 128 -> 256``, a max-pool over the points and an MLP head
  ``256 -> 128 -> K``.  Permutation invariant, but *not* rotation invariant:
  it sees raw coordinates.
* :class:`DistanceHistogramClassifier` -- exactly invariant to 3-D rotations
  (and reflections, translations and point permutations) by construction: it
  only looks at a soft histogram of the pairwise distances between the points
  and a soft histogram of the distances of the points from their centroid, and
  classifies those with a small MLP.

Inputs are float32 tensors of shape ``(N, P, 3)`` (P points, xyz; the bundled
data has P = 256, centred at the origin and scaled into the unit ball); outputs
are logits of shape ``(N, K)``.  The class order of the bundled weights is
:data:`SHAPE_CLASSES`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "SHAPE_CLASSES",
    "PointNet",
    "DistanceHistogramClassifier",
    "pointnet",
    "distance_classifier",
]

#: Class order of the bundled point-cloud weights and of ``shapes200.npz``.
SHAPE_CLASSES: tuple[str, ...] = ("box", "sphere", "cylinder", "cone", "torus")


def _check_points(x: torch.Tensor) -> None:
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected points of shape (N, P, 3), got {tuple(x.shape)}")


class PointNet(nn.Module):
    """Small PointNet (no input/feature transform nets, ~75k parameters).

    ``(N, P, 3)`` -> shared MLP 3->64->128->256 (ReLU; ``nn.Linear`` on the last
    dimension, the same as a kernel-size-1 ``Conv1d``) -> max over the P points
    -> MLP 256->128->K.
    """

    def __init__(self, num_classes: int = len(SHAPE_CLASSES)) -> None:
        super().__init__()
        self.point_mlp = nn.Sequential(
            nn.Linear(3, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, 256),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_points(x)
        feats = self.point_mlp(x)  # (N, P, 256)
        return self.head(feats.amax(dim=1))


def _soft_histogram(values: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """Linear-interpolation ("triangular kernel") histogram over the last dim.

    ``values``: ``(N, M)``; returns ``(N, bins)`` summing to 1 per row.  Each value
    splits its unit weight between the two nearest bin centres, so the histogram is
    a continuous function of the values (tiny float changes, e.g. from rotating
    the input, give tiny changes).  Values outside ``[lo, hi]`` are clamped.
    """
    n, m = values.shape
    pos = (values.clamp(lo, hi) - lo) * ((bins - 1) / (hi - lo))  # in [0, bins-1]
    left = pos.floor().clamp(max=bins - 2)
    w_right = pos - left
    left_idx = left.long()
    hist = values.new_zeros(n, bins)
    hist.scatter_add_(1, left_idx, 1.0 - w_right)
    hist.scatter_add_(1, left_idx + 1, w_right)
    return hist / max(m, 1)


class DistanceHistogramClassifier(nn.Module):
    """Rotation-invariant point-cloud classifier on distance histograms.

    Features (parameter-free, computed in the dtype of the MLP weights):

    * a soft histogram (``pair_bins`` bins on ``[0, pair_max]``) of all
      ``P (P - 1) / 2`` pairwise distances ``|x_i - x_j|``;
    * a soft histogram (``radial_bins`` bins on ``[0, radial_max]``) of the
      distances ``|x_i - mean(x)|`` of the points from their centroid.

    Both are unchanged by any rotation or reflection of the input (and by
    translations and point permutations), up to float rounding, so the logits are
    exactly O(3)-invariant by construction.  The histograms (scaled by their bin
    counts, so a feature is ~1 on average) go through an MLP
    ``pair_bins + radial_bins -> 128 -> 64 -> K``.

    Distances past ``pair_max`` / ``radial_max`` (made for clouds in the unit
    ball) land in the last bin, so the model is *not* scale invariant.
    """

    def __init__(
        self,
        num_classes: int = len(SHAPE_CLASSES),
        pair_bins: int = 32,
        pair_max: float = 2.0,
        radial_bins: int = 16,
        radial_max: float = 1.0,
        chunk: int = 64,
    ) -> None:
        super().__init__()
        self.pair_bins, self.pair_max = pair_bins, pair_max
        self.radial_bins, self.radial_max = radial_bins, radial_max
        self.chunk = chunk
        self.mlp = nn.Sequential(
            nn.Linear(pair_bins + radial_bins, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Invariant features ``(N, pair_bins + radial_bins)`` of points ``(N, P, 3)``."""
        _check_points(x)
        x = x.to(self.mlp[0].weight.dtype)
        p = x.shape[1]
        i, j = torch.triu_indices(p, p, offset=1, device=x.device)
        upper = i * p + j  # the P (P - 1) / 2 pairs i < j of the flattened (P, P) matrix
        out = []
        for xc in x.split(self.chunk):  # bound the (chunk, P, P) temporaries
            # direct |x_i - x_j| (not the |a|^2 + |b|^2 - 2ab matmul shortcut, which
            # loses precision for close points)
            dist = torch.cdist(xc, xc, compute_mode="donot_use_mm_for_euclid_dist")
            pair = dist.flatten(1)[:, upper]
            radial = (xc - xc.mean(dim=1, keepdim=True)).norm(dim=-1)
            out.append(
                torch.cat(
                    [
                        _soft_histogram(pair, 0.0, self.pair_max, self.pair_bins) * self.pair_bins,
                        _soft_histogram(radial, 0.0, self.radial_max, self.radial_bins) * self.radial_bins,
                    ],
                    dim=1,
                )
            )
        if not out:
            return x.new_zeros(0, self.pair_bins + self.radial_bins)
        return torch.cat(out)

    def classify_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(x))


def pointnet() -> PointNet:
    """Factory: an untrained :class:`PointNet` for the 5 bundled shape classes."""
    return PointNet()


def distance_classifier() -> DistanceHistogramClassifier:
    """Factory: an untrained :class:`DistanceHistogramClassifier` (5 classes)."""
    return DistanceHistogramClassifier()
