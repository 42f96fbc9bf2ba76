"""``--resize H,W`` and ``--center-crop``: every image brought to one size before the orbit.

``--resize H,W`` resizes each image to exactly H×W. ``--resize H,W --center-crop`` keeps the
aspect ratio: the image is scaled by ``s = max(H / h, W / w)`` (the shorter side, relative to the
target, fits) to ``max(H, round(h·s))`` × ``max(W, round(w·s))``, and the centre H×W is kept
(the crop starts at ``(rows - H) // 2``, ``(columns - W) // 2``). Resampling is
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True)`` on the
float32 pixels in [0, 1]: a triangle filter widened by the scale factor when shrinking (as
Pillow's bilinear resize), plain bilinear when enlarging; results are clamped to [0, 1]. An image
already of the target size is left as it is. Each image is resized on its own, so a chunk gives
the same pixels as the whole input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import OptionError


@dataclass(frozen=True)
class Shaping:
    """The size every image is brought to, and whether the aspect ratio is kept (centre crop)."""

    size: tuple[int, int]
    crop: bool = False

    def record(self) -> str:
        """How the images were shaped, for the data digest (the cache key) and messages."""
        return f"resize={self.size[0]},{self.size[1]}" + (",center-crop" if self.crop else "")

    def scaled_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an ``h``×``w`` image is resized to before the crop."""
        th, tw = self.size
        if not self.crop:
            return th, tw
        s = max(th / h, tw / w)
        return max(th, round(h * s)), max(tw, round(w * s))

    def fit(self, image: torch.Tensor) -> torch.Tensor:
        """One image ``(C, h, w)`` float32 in [0, 1] as ``(C, H, W)``."""
        h, w = int(image.shape[-2]), int(image.shape[-1])
        nh, nw = self.scaled_size(h, w)
        if (nh, nw) != (h, w):
            image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False,
                                  antialias=True)[0].clamp_(0.0, 1.0)
        th, tw = self.size
        top, left = (nh - th) // 2, (nw - tw) // 2
        return image[:, top : top + th, left : left + tw].contiguous()


def parse_resize(resize: Any, center_crop: bool = False) -> Shaping | None:
    """``--resize H,W`` (a string ``"H,W"`` / ``"HxW"`` or a pair) and ``--center-crop`` as a Shaping."""
    if resize is None or resize == "":
        if center_crop:
            raise OptionError("--center-crop needs --resize H,W (the size to crop to)")
        return None
    try:
        parts = ([p for p in str(resize).lower().replace("x", ",").split(",") if p.strip()]
                 if isinstance(resize, str) else list(resize))
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) <= 0:
        raise OptionError(f"--resize expects H,W: two positive numbers of pixels (e.g. 224,224); got '{resize}'")
    return Shaping((size[0], size[1]), bool(center_crop))


__all__ = ["Shaping", "parse_resize"]
