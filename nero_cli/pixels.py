"""Pixels as nero evaluates them: ``(N, C, H, W)`` float32 in [0, 1].

:func:`normalise_pixels` turns uint8 0..255, other integers in 0..255 or floats in [0, 1] into
float32 in [0, 1] and refuses NaN, inf and other ranges. Every step is per element, so a chunk
converted alone equals the same rows of the whole array converted at once (what lets
:mod:`nero_cli.sources` read data in chunks with results identical to a whole read).
:class:`PixelStats` carries what the checks need from one chunk, so a lazily read input is
checked chunk by chunk with the same messages as a whole read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


def to_nchw(images: np.ndarray, source: str, channels: int | None = None) -> np.ndarray:
    """``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` to ``(N, C, H, W)`` (decided by the
    shape past the first axis, so every chunk of an array is laid out as the whole)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim != 4:
        raise DataError(f"{source}: 'images' must be (N, H, W), (N, C, H, W) or (N, H, W, C); found shape {images.shape}")
    first, last = images.shape[1], images.shape[-1]
    if channels is not None:
        if first == channels:
            return images
        if last == channels:
            return np.moveaxis(images, -1, 1)
        raise DataError(f"{source}: the model expects {channels} channel(s), the images have shape {images.shape}")
    if first in (1, 3, 4):
        return images
    if last in (1, 3, 4):
        return np.moveaxis(images, -1, 1)
    raise DataError(f"{source}: cannot tell the channel axis of shape {images.shape}; expected 1, 3 or 4 channels first or last")


@dataclass
class PixelStats:
    """What the pixel checks need of some rows: the range, and the samples holding NaN or inf."""

    lo: float
    hi: float
    n_bad: int = 0
    first_bad: int | None = None

    @classmethod
    def of(cls, images: np.ndarray, first: int = 0) -> "PixelStats":
        """The stats of ``images`` (rows ``first``, ``first + 1``, ... of the input)."""
        if images.dtype.kind == "f":
            bad = (~np.isfinite(images)).reshape(len(images), -1).any(1)
            if bad.any():
                return cls(0.0, 0.0, int(bad.sum()), first + int(np.argmax(bad)))
        return cls(float(images.min()), float(images.max()))

    def merge(self, other: "PixelStats") -> "PixelStats":
        first = self.first_bad if self.first_bad is not None else other.first_bad
        if self.n_bad or other.n_bad:
            return PixelStats(0.0, 0.0, self.n_bad + other.n_bad, first)
        return PixelStats(min(self.lo, other.lo), max(self.hi, other.hi))

    def check(self, dtype: np.dtype, source: str) -> None:
        """One DataError line when pixels of ``dtype`` with these stats are not usable."""
        if dtype == np.uint8:
            return
        if dtype.kind in "iu":
            if self.lo < 0 or self.hi > 255:
                raise DataError(f"{source}: integer images must be 0..255, found {self.lo:g}..{self.hi:g}")
            return
        if dtype.kind != "f":
            raise DataError(f"{source}: 'images' must be uint8 or float, found dtype {dtype}")
        if self.n_bad:
            raise DataError(f"{source}: {self.n_bad} image(s) contain NaN or inf (first: sample {self.first_bad}); "
                            "clean the data first")
        if self.lo < -1e-6 or self.hi > 1 + 1e-6:
            hint = "; divide by 255 or save as uint8" if self.hi > 1.5 else ""
            raise DataError(f"{source}: float images must be in [0, 1], found {self.lo:g}..{self.hi:g}{hint}")


def needs_check(dtype: np.dtype) -> bool:
    """Whether pixels of ``dtype`` must be scanned (uint8 are always valid)."""
    return dtype != np.uint8


def to_unit(images: np.ndarray) -> np.ndarray:
    """Checked pixels as C-contiguous float32 in [0, 1] (integers / 255, floats clipped)."""
    if images.dtype.kind in "iu":
        out = images.astype(np.float32, order="C")  # one float32 array, divided in place
        out /= np.float32(255.0)
        return out
    return np.clip(images, 0.0, 1.0).astype(np.float32, order="C", copy=False)


def normalise_pixels(images: np.ndarray, source: str) -> np.ndarray:
    """uint8 0..255 or float in [0, 1] to float32 in [0, 1], refusing NaN/inf and other ranges."""
    if images.size == 0:
        raise DataError(f"{source}: no images (the array is empty)")
    if images.dtype.kind not in "iuf":
        raise DataError(f"{source}: 'images' must be uint8 or float, found dtype {images.dtype}")
    if needs_check(images.dtype):
        PixelStats.of(images).check(images.dtype, source)
    return to_unit(images)
