#!/usr/bin/env python
"""Rebuild the bundled optical-flow / PIV samples (weights, evaluation set, report).

Usage (from the repository root)::

    python sample_models/build_flow.py

No download needed: training and evaluation data are synthetic particle-image
pairs from :func:`sample_models.flow.synthetic_piv`.

Deterministic: a fixed number of optimisation steps; seeds, threads and
deterministic algorithms as set by ``_build.deterministic``.

Writes (all relative to this file's directory):

* ``data/piv64.npz``                 64 evaluation pairs, 16 of each flow kind
  (``frames`` float32 (64, 2, 32, 32), ``flow`` float32 (64, 2, 32, 32),
  ``kinds`` str (64,))
* ``weights/flownet.safetensors``    :class:`~sample_models.flow.FlowNet`, trained
  plainly on fresh synthetic pairs of all four kinds (no D4 augmentation)
* ``weights/flow_report.json``       average endpoint errors (AEE, px) of flownet,
  fft-piv and a zero-flow baseline on piv64, per kind; training time

Training takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import math
import time

if __package__:  # python -m sample_models.build_flow
    from . import _build
else:  # python sample_models/build_flow.py: this folder is sys.path[0]
    import _build

HERE = _build.setup_script(__file__)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sample_models.flow import (  # noqa: E402
    FLOW_KINDS, FlowNet, d4_act_frames, d4_inverse_act_flow, endpoint_error, fft_piv, gradient_flow, synthetic_piv,
)

SEED = 0
SIZE = 32
BATCH = 32
STEPS = 1000
LR = 2e-3
CHUNK = 1024  # training pairs generated per call of synthetic_piv
TRAIN_SEED0 = 1_000_000  # chunk c of the training stream uses seed TRAIN_SEED0 + c
EVAL_SEED = 64
EVAL_N = 64  # 16 of each kind

WEIGHTS_DIR = HERE / "weights"
DATA_DIR = HERE / "data"


def train() -> tuple[FlowNet, float, float, list[float]]:
    torch.manual_seed(SEED)
    model = FlowNet()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / STEPS)))
    t0, c0 = time.perf_counter(), time.process_time()
    gen_seconds = 0.0
    chunk, ptr, pool = 0, CHUNK, None
    losses: list[float] = []
    running = 0.0
    model.train()
    for step in range(1, STEPS + 1):
        if ptr + BATCH > CHUNK:
            tg = time.perf_counter()
            pool = synthetic_piv(CHUNK, SIZE, FLOW_KINDS, seed=TRAIN_SEED0 + chunk)
            gen_seconds += time.perf_counter() - tg
            chunk, ptr = chunk + 1, 0
        x, y = pool[0][ptr : ptr + BATCH], pool[1][ptr : ptr + BATCH]
        ptr += BATCH
        loss = endpoint_error(model(x), y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if step % 100 == 0:
            losses.append(round(running / 100, 4))
            running = 0.0
            print(
                f"  step {step}/{STEPS}: train AEE {losses[-1]:.3f} px  "
                f"({time.perf_counter() - t0:.0f}s, data {gen_seconds:.0f}s)",
                flush=True,
            )
    model.eval()
    return model, time.perf_counter() - t0, time.process_time() - c0, losses


@torch.no_grad()
def aee_by_kind(model, frames: torch.Tensor, flow: torch.Tensor, kinds: list[str]) -> dict[str, float]:
    pred = model(frames) if model is not None else torch.zeros_like(flow)
    err = endpoint_error(pred, flow)
    out = {"all": round(err.mean().item(), 4)}
    for k in FLOW_KINDS:
        idx = [i for i, kk in enumerate(kinds) if kk == k]
        out[k] = round(err[idx].mean().item(), 4)
    return out


@torch.no_grad()
def d4_deviation(model, frames: torch.Tensor) -> float:
    """max over D4 of mean_px |g^-1 f(g x) - f(x)| (px): 0 for an equivariant model."""
    ref = model(frames)
    worst = 0.0
    for k in range(4):
        for flip in (False, True):
            back = d4_inverse_act_flow(model(d4_act_frames(frames, k, flip)), k, flip)
            worst = max(worst, (back - ref).norm(dim=1).mean().item())
    return worst


def main() -> None:
    t_start = time.perf_counter()
    deterministic = _build.deterministic(SEED)
    WEIGHTS_DIR.mkdir(exist_ok=True)
    DATA_DIR.mkdir(exist_ok=True)

    # Evaluation set ----------------------------------------------------------
    frames, flow, kinds = synthetic_piv(EVAL_N, SIZE, FLOW_KINDS, seed=EVAL_SEED, return_kinds=True)
    data_path = DATA_DIR / "piv64.npz"
    np.savez_compressed(
        data_path,
        frames=frames.numpy().astype(np.float32),
        flow=flow.numpy().astype(np.float32),
        kinds=np.array(kinds),
    )
    _build.wrote(data_path)

    # Training ----------------------------------------------------------------
    print(f"training flownet ({STEPS} steps x batch {BATCH}, fresh synthetic pairs, no augmentation)", flush=True)
    model, t_train, cpu_train, losses = train()
    _build.save_weights(model, WEIGHTS_DIR / "flownet.safetensors", "sample_models.flow:flownet")

    # Evaluation --------------------------------------------------------------
    models = {"flownet": model, "fft-piv": fft_piv().eval(), "zero": None}
    aee = {name: aee_by_kind(m, frames, flow, kinds) for name, m in models.items()}
    d4 = {
        "flownet": round(d4_deviation(model, frames), 4),
        "fft-piv": round(d4_deviation(models["fft-piv"], frames), 6),
        "gradient-flow": d4_deviation(gradient_flow(), frames),
    }
    for name, row in aee.items():
        print(f"{name:8s} AEE " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    print(f"D4 deviation (mean endpoint px, worst element): {d4}", flush=True)

    report = {
        "dataset": f"synthetic PIV pairs (sample_models.flow.synthetic_piv), {SIZE}x{SIZE}, "
        "kinds uniform/shear/vortex/random",
        "eval_set": f"piv64: {EVAL_N} pairs, seed {EVAL_SEED}, sample i has kind i % 4",
        "metric": "AEE: average endpoint error |pred - true|_2 over all pixels, in px",
        "architecture": f"FlowNet (sample_models/flow.py), {sum(p.numel() for p in model.parameters())} parameters",
        "training": f"{STEPS} steps, batch {BATCH}, fresh pairs (chunks of {CHUNK}, seeds {TRAIN_SEED0}+c), "
        f"Adam lr={LR} cosine to 0, loss AEE, no augmentation",
        "train_aee_per_100_steps": losses,
        "train_seconds": round(t_train, 1),
        "train_cpu_seconds": round(cpu_train, 1),
        "train_seconds_note": "wall clock (depends on machine load) and process CPU time (all threads) "
        "of the training loop, data generation included",
        "aee_piv64": aee,
        "d4_deviation_piv64": d4,
        "d4_deviation_note": "max over the 8 D4 elements g of the mean endpoint distance between "
        "g^-1 f(g x) and f(x), px (0 = exactly equivariant)",
        "seed": SEED,
        **_build.environment(deterministic),
    }
    _build.write_report(WEIGHTS_DIR / "flow_report.json", report, t_start)


if __name__ == "__main__":
    main()
