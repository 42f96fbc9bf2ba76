"""Optical-flow / PIV sample models and synthetic particle-image data (torch only).

Contract shared by every model here:

* input: float32 ``(N, 2, H, W)`` -- frame 1 and frame 2 (grey-scale, values in
  ``[0, 1]``) stacked on the channel axis;
* output: float32 ``(N, 2, H, W)`` -- the flow in pixels on the pixel grid of
  frame 1; channel 0 is ``u`` along +x (to the right, column index increasing),
  channel 1 is ``v`` along +y (down, row index increasing).  A particle at
  ``(x, y)`` in frame 1 is at ``(x + u, y + v)`` in frame 2.

Pixel ``(row i, column j)`` has its centre at ``x = j, y = i``.

Contents:

* :func:`synthetic_piv` -- synthetic particle-image pairs with known flows
  (uniform, shear, vortex, random smooth field);
* :class:`FlowNet` -- a small fully-convolutional learned flow network
  (a one-level U-Net with dilated convolutions, no pooling), factory :func:`flownet`;
* :class:`FFTCrossCorrelationPIV` -- classical FFT cross-correlation PIV
  (interrogation windows, 3-point Gaussian sub-pixel peak fit, bilinear
  upsampling to a dense field), no weights, factory :func:`fft_piv`;
* :class:`GradientFlow` -- ``(u, v) = grad(frame1 - frame2)``: not a flow
  estimator, but exactly equivariant under the dihedral group D4 (pixels move
  and vectors rotate / reflect with them) and odd under swapping the frames;
  a reference "model" for tests.  Factory :func:`gradient_flow`.

D4 acting on a flow field (y pointing down): ``torch.rot90(x, 1, dims=(-2, -1))``
rotates the picture 90 degrees counter-clockwise as displayed, and a vector
``(u, v)`` becomes ``(v, -u)``; a horizontal flip (``torch.flip(x, (-1,))``)
negates ``u``.  See :func:`d4_act_frames` / :func:`d4_act_flow`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FLOW_KINDS",
    "synthetic_piv",
    "FlowNet",
    "FFTCrossCorrelationPIV",
    "GradientFlow",
    "flownet",
    "fft_piv",
    "gradient_flow",
    "endpoint_error",
    "d4_act_frames",
    "d4_act_flow",
    "d4_inverse_act_flow",
]

FLOW_KINDS: tuple[str, ...] = ("uniform", "shear", "vortex", "random")

# --------------------------------------------------------------------------- synthetic data

_N_SINES = 3  # sinusoids per component of the "random" field


def _flow_params(kinds: Sequence[str], size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-sample parameters of ``flow(x, y) = A + B (p - c) + sum_k s_k sin(w_k . p + phi_k)``."""
    n = len(kinds)
    c = (size - 1) / 2.0
    A = torch.zeros(n, 2)
    B = torch.zeros(n, 2, 2)
    amp = torch.zeros(n, 2, _N_SINES)  # (sample, component, term)
    w = torch.zeros(n, 2, _N_SINES, 2)  # angular frequency (wx, wy)
    phi = torch.zeros(n, 2, _N_SINES)
    r_max = math.sqrt(2.0) * c  # distance of the corner pixel centres from the centre

    u01 = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    for i, kind in enumerate(kinds):
        if kind == "uniform":
            # random direction, |u| <= 2 px
            theta = 2 * math.pi * u01(()).item()
            mag = 2.0 * u01(()).item()
            A[i] = torch.tensor([mag * math.cos(theta), mag * math.sin(theta)])
        elif kind == "shear":
            # u = a (y - cy), v = 0, max |u| over the frame in [0.5, 2] px
            a = (0.5 + 1.5 * u01(()).item()) / c
            a = a if u01(()).item() < 0.5 else -a
            B[i, 0, 1] = a
        elif kind == "vortex":
            # solid-body rotation about the centre: u = -om (y - cy), v = om (x - cx);
            # max speed over the frame (at the corners) in [0.75, 2.5] px
            om = (0.75 + 1.75 * u01(()).item()) / r_max
            om = om if u01(()).item() < 0.5 else -om
            B[i] = torch.tensor([[0.0, -om], [om, 0.0]])
        elif kind == "random":
            # a few low-frequency sinusoids per component (0.3 .. 1.2 cycles per frame)
            cycles = 0.3 + 0.9 * u01(2, _N_SINES)
            ang = 2 * math.pi * u01(2, _N_SINES)
            k = 2 * math.pi * cycles / size
            w[i] = torch.stack([k * torch.cos(ang), k * torch.sin(ang)], dim=-1)
            phi[i] = 2 * math.pi * u01(2, _N_SINES)
            amp[i] = torch.randn(2, _N_SINES, generator=gen)
            A[i] = 0.3 * torch.randn(2, generator=gen)
        else:
            raise ValueError(f"unknown flow kind {kind!r}; valid: {', '.join(FLOW_KINDS)}")
    params = {"A": A, "B": B, "amp": amp, "w": w, "phi": phi, "c": torch.tensor(c)}
    # Normalise the random fields: max |flow| over the frame's pixel grid in [0.75, 2] px.
    rnd = torch.tensor([k == "random" for k in kinds])
    if rnd.any():
        ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1).expand(n, -1, -1)
        speed = _eval_flow(params, grid).norm(dim=-1).amax(dim=1)  # (n,)
        target = 0.75 + 1.25 * u01(n)
        scale = torch.where(rnd, target / speed.clamp_min(1e-6), torch.ones(n))
        params["A"] = params["A"] * scale[:, None]
        params["amp"] = params["amp"] * scale[:, None, None]
    return params


def _eval_flow(params: dict[str, torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    """Flow at points ``p`` (n, P, 2) as (x, y) -> (n, P, 2) as (u, v)."""
    d = p - params["c"]
    out = params["A"][:, None, :] + torch.einsum("nij,npj->npi", params["B"], d)
    # sinusoids: arg (n, P, comp, term)
    arg = torch.einsum("nckj,npj->npck", params["w"], p) + params["phi"][:, None]
    out = out + (params["amp"][:, None] * torch.sin(arg)).sum(-1)
    return out


def _render(pos: torch.Tensor, amp: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Render Gaussian particles analytically: pos (n, P, 2) (x, y), amp/sigma (n, P) -> (n, H, W).

    The 2-D Gaussian is separable, so the image is a batched matrix product
    ``gy^T diag(amp) gx`` -- exact, no warping or resampling.
    """
    coords = torch.arange(size, dtype=torch.float32)
    s2 = 2.0 * sigma[..., None] ** 2
    gx = torch.exp(-((coords - pos[..., 0:1]) ** 2) / s2)  # (n, P, W)
    gy = torch.exp(-((coords - pos[..., 1:2]) ** 2) / s2)  # (n, P, H)
    img = torch.bmm((gy * amp[..., None]).transpose(1, 2), gx)  # (n, H, W)
    return img.clamp(0.0, 1.0)


def synthetic_piv(
    n: int,
    size: int = 32,
    kinds: Sequence[str] = FLOW_KINDS,
    seed: int = 0,
    *,
    particles: tuple[int, int] = (60, 120),
    sigma: tuple[float, float] = (0.8, 1.3),
    noise: float = 0.0,
    return_kinds: bool = False,
):
    """Synthetic PIV image pairs with known flow.

    Sample ``i`` has flow kind ``kinds[i % len(kinds)]`` (so ``n = 16 * 4`` gives 16
    of each of the four default kinds, interleaved):

    * ``uniform``: constant flow, random direction, ``|u| <= 2`` px;
    * ``shear``: ``u = a (y - cy)``, ``v = 0``, ``max |u|`` over the frame in [0.5, 2] px;
    * ``vortex``: solid-body rotation about the frame centre, max speed in [0.75, 2.5] px;
    * ``random``: smooth field, a sum of three low-frequency sinusoids per component
      plus a small offset, scaled so that the max speed is in [0.75, 2] px.

    Particles (``particles`` = range of the count inside the frame; the same density
    continues in a 4-px margin so particles flow in and out) are Gaussian blobs with
    peak brightness in [0.5, 1] and standard deviation in ``sigma`` px, rendered
    analytically at ``p`` in frame 1 and at ``p + flow(p)`` in frame 2; overlapping
    particles saturate at 1.  ``noise`` adds Gaussian pixel noise (then clamps to [0, 1]).

    Returns ``frames`` (n, 2, size, size) float32 in [0, 1] and ``flow`` (n, 2, size,
    size) float32 (the ground truth at the pixel centres of frame 1, channel 0 = u
    to the right, channel 1 = v down); with ``return_kinds=True`` also the list of kinds.
    Deterministic for a given ``seed``.
    """
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("kinds must not be empty")
    gen = torch.Generator().manual_seed(int(seed))
    sample_kinds = [kinds[i % len(kinds)] for i in range(n)]
    params = _flow_params(sample_kinds, size, gen)

    margin = 4.0
    lo, hi = -0.5 - margin, size - 0.5 + margin
    area_ratio = ((hi - lo) / size) ** 2
    p_max = int(math.ceil(particles[1] * area_ratio))
    counts = torch.randint(particles[0], particles[1] + 1, (n,), generator=gen).float() * area_ratio
    pos1 = lo + (hi - lo) * torch.rand(n, p_max, 2, generator=gen)
    active = (torch.arange(p_max)[None, :] < counts.round()[:, None]).float()
    amp = (0.5 + 0.5 * torch.rand(n, p_max, generator=gen)) * active
    sig = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(n, p_max, generator=gen)
    pos2 = pos1 + _eval_flow(params, pos1)

    frames = torch.stack([_render(pos1, amp, sig, size), _render(pos2, amp, sig, size)], dim=1)
    if noise > 0:
        frames = (frames + noise * torch.randn(frames.shape, generator=gen)).clamp(0.0, 1.0)

    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1).expand(n, -1, -1)
    flow = _eval_flow(params, grid).reshape(n, size, size, 2).permute(0, 3, 1, 2).contiguous()
    frames = frames.float().contiguous()
    if return_kinds:
        return frames, flow.float(), sample_kinds
    return frames, flow.float()


def endpoint_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample average endpoint error (px): mean over pixels of ``|pred - target|_2``."""
    return (pred - target).norm(dim=1).flatten(1).mean(dim=1)


# --------------------------------------------------------------------------- D4 actions

def d4_act_frames(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Group element g = rot90^k after an optional horizontal flip, acting on images."""
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1))


def d4_act_flow(f: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """g acting on a flow field (N, 2, H, W): moves the pixels and rotates/reflects the vectors."""
    u, v = f[:, 0], f[:, 1]
    if flip:
        u = -u
    for _ in range(k % 4):
        u, v = v, -u  # 90 deg counter-clockwise as displayed (y down)
    return d4_act_frames(torch.stack([u, v], dim=1), k, flip)


def d4_inverse_act_flow(f: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """g^-1 acting on a flow field: undo the rotation, then undo the flip."""
    f = torch.rot90(f, -k, dims=(-2, -1))
    u, v = f[:, 0], f[:, 1]
    for _ in range(k % 4):
        u, v = -v, u  # 90 deg clockwise as displayed
    if flip:
        u = -u
    f = torch.stack([u, v], dim=1)
    return torch.flip(f, dims=(-1,)) if flip else f


# --------------------------------------------------------------------------- models

class FlowNet(nn.Module):
    """Small fully-convolutional flow network: a one-level U-Net, no pooling (~68k parameters).

    Shapes for a ``(N, 2, 32, 32)`` input::

        encode   conv3x3 2->16, ReLU                         (32x32)  -- fine features f
        down     conv4x4 stride 2 16->32, ReLU               (16x16)
        context  5x [conv3x3 32->32 dilation 1,2,4,2,1, ReLU] (16x16)
        up       transposed conv4x4 stride 2 32->16, ReLU    (32x32)
        head     concat(up, f) conv3x3 32->16, ReLU, conv3x3 16->2

    All convolutions use 'same'-style zero padding, so the output has the input's
    size (``H`` and ``W`` must be even).  The output is the flow in pixels.  Nothing
    in the architecture ties it to a symmetry: any D4 equivariance has to be learned.
    """

    def __init__(self, width: int = 16, mid: int = 32, dilations: Sequence[int] = (1, 2, 4, 2, 1)) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU(inplace=True))
        self.down = nn.Sequential(nn.Conv2d(width, mid, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        ctx: list[nn.Module] = []
        for d in dilations:
            ctx += [nn.Conv2d(mid, mid, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
        self.context = nn.Sequential(*ctx)
        self.up = nn.Sequential(nn.ConvTranspose2d(mid, width, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 2 or x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"FlowNet expects frames (N, 2, H, W) with even H and W, got {tuple(x.shape)}")
        f = self.encode(x - 0.25)  # frames are in [0, 1]; centre them roughly
        h = self.context(self.down(f))
        return self.head(torch.cat([self.up(h), f], dim=1))


class FFTCrossCorrelationPIV(nn.Module):
    """Classical PIV by FFT cross-correlation of interrogation windows (no weights).

    1. both frames are cut into ``window`` x ``window`` interrogation windows with
       ``stride`` (the window grid is centred in the frame), each made zero-mean;
    2. the circular cross-correlation ``R(d) = sum_x w1(x) w2(x + d)`` is computed by
       ``irfft2(conj(rfft2(w1)) * rfft2(w2))`` and, optionally, divided by the
       overlap ``(window - |dx|)(window - |dy|)`` of the two windows at shift ``d``;
    3. the integer peak (within ``|d| <= max_shift``, default ``window // 4``, the
       usual one-quarter rule) is refined with a 3-point
       Gaussian fit per axis (parabolic fit where a neighbour is not positive);
    4. the window vectors, located at the window centres, are interpolated
       bilinearly to every pixel (constant extrapolation beyond the outer centres).

    Fully batched: no Python loops over windows or samples.  The displacement
    ``d`` maximising ``R`` is the one that moves frame 1 onto frame 2, so the sign
    convention matches the package contract (``u`` right, ``v`` down).
    """

    def __init__(self, window: int = 16, stride: int = 8, max_shift: int | None = None, overlap_correction: bool = True) -> None:
        super().__init__()
        if window < 4 or stride < 1:
            raise ValueError("window must be >= 4 and stride >= 1")
        self.window = window
        self.stride = stride
        self.max_shift = window // 4 if max_shift is None else max_shift
        self.overlap_correction = overlap_correction
        s = torch.arange(window)
        shift = torch.where(s < (window + 1) // 2, s, s - window).float()  # circular index -> signed shift
        self.register_buffer("shift", shift, persistent=False)

    def _grid(self, length: int) -> tuple[int, int]:
        if length < self.window:
            raise ValueError(f"frame side {length} is smaller than the interrogation window {self.window}")
        n = (length - self.window) // self.stride + 1
        offset = (length - (self.window + self.stride * (n - 1))) // 2
        return n, offset

    def _interp_matrix(self, length: int, n: int, offset: int, dtype, device) -> torch.Tensor:
        """(length, n) matrix of bilinear weights from window centres to pixel centres."""
        centre0 = offset + (self.window - 1) / 2.0
        t = ((torch.arange(length, dtype=dtype, device=device) - centre0) / self.stride).clamp(0, n - 1)
        i0 = t.floor().clamp(max=max(n - 2, 0)).long()
        frac = t - i0
        m = torch.zeros(length, n, dtype=dtype, device=device)
        rows = torch.arange(length, device=device)
        m[rows, i0] += 1 - frac
        if n > 1:
            m[rows, (i0 + 1).clamp(max=n - 1)] += frac
        return m

    def window_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """Displacement per interrogation window: (N, 2, nh, nw) as (u, v)."""
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"expected frames (N, 2, H, W), got {tuple(x.shape)}")
        N, _, H, W = x.shape
        ws = self.window
        nh, oh = self._grid(H)
        nw, ow = self._grid(W)
        x = x.float()[:, :, oh:, ow:]
        win = x.unfold(2, ws, self.stride).unfold(3, ws, self.stride)[:, :, :nh, :nw]  # (N, 2, nh, nw, ws, ws)
        win = win - win.mean(dim=(-2, -1), keepdim=True)
        f1 = torch.fft.rfft2(win[:, 0])
        f2 = torch.fft.rfft2(win[:, 1])
        corr = torch.fft.irfft2(torch.conj(f1) * f2, s=(ws, ws))  # (N, nh, nw, ws, ws); [dy, dx]
        sh = self.shift.to(corr.device)
        if self.overlap_correction:
            ov = (ws - sh.abs())[:, None] * (ws - sh.abs())[None, :] / float(ws * ws)
            corr = corr / ov
        allowed = (sh.abs()[:, None] <= self.max_shift) & (sh.abs()[None, :] <= self.max_shift)
        flat = corr.masked_fill(~allowed, float("-inf")).flatten(-2)
        idx = flat.argmax(dim=-1)  # (N, nh, nw)
        iy, ix = idx // ws, idx % ws

        def take(dy: int, dx: int) -> torch.Tensor:
            j = ((iy + dy) % ws) * ws + (ix + dx) % ws
            return corr.flatten(-2).gather(-1, j[..., None])[..., 0]

        c0 = take(0, 0)
        dx = self._subpixel(take(0, -1), c0, take(0, 1))
        dy = self._subpixel(take(-1, 0), c0, take(1, 0))
        u = sh[ix] + dx
        v = sh[iy] + dy
        return torch.stack([u, v], dim=1)

    @staticmethod
    def _subpixel(cm: torch.Tensor, c0: torch.Tensor, cp: torch.Tensor) -> torch.Tensor:
        eps = 1e-12
        positive = (cm > eps) & (c0 > eps) & (cp > eps)
        lm, l0, lp = (t.clamp_min(eps).log() for t in (cm, c0, cp))
        den_g = 2 * (lm - 2 * l0 + lp)
        gauss = (lm - lp) / torch.where(den_g.abs() > eps, den_g, torch.full_like(den_g, -eps))
        den_p = 2 * (cm - 2 * c0 + cp)
        parab = (cm - cp) / torch.where(den_p.abs() > eps, den_p, torch.full_like(den_p, -eps))
        off = torch.where(positive, gauss, parab)
        return torch.nan_to_num(off, nan=0.0, posinf=0.0, neginf=0.0).clamp(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, _, H, W = x.shape
        vec = self.window_vectors(x)
        nh, oh = self._grid(H)
        nw, ow = self._grid(W)
        mh = self._interp_matrix(H, nh, oh, vec.dtype, vec.device)
        mw = self._interp_matrix(W, nw, ow, vec.dtype, vec.device)
        dense = torch.einsum("hi,ncij,wj->nchw", mh, vec, mw)
        return dense.to(x.dtype) if x.is_floating_point() else dense


class GradientFlow(nn.Module):
    """``(u, v) = (d/dx, d/dy) (frame1 - frame2)`` by central differences, zero padding.

    Not a flow estimator.  Exactly equivariant by construction under D4 (rotating or
    reflecting the frames rotates / reflects this vector field) and odd under time
    reversal (swapping the frames negates it); used as an exactly equivariant
    reference in tests.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x[:, 0:1] - x[:, 1:2]
        p = F.pad(g, (1, 1, 1, 1))  # zeros on all four sides: symmetric under D4
        u = 0.5 * (p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2])
        v = 0.5 * (p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1])
        return torch.cat([u, v], dim=1)


def flownet() -> FlowNet:
    """Factory: an untrained :class:`FlowNet`."""
    return FlowNet()


def fft_piv() -> FFTCrossCorrelationPIV:
    """Factory: :class:`FFTCrossCorrelationPIV` with 16x16 windows, stride 8."""
    return FFTCrossCorrelationPIV(window=16, stride=8)


def gradient_flow() -> GradientFlow:
    """Factory: :class:`GradientFlow`."""
    return GradientFlow()
