"""CPU cost of one ``cpu-crops`` training step, by variant (issue #10: "channels_last / bf16 / ``torch.compile`` on
the CPU where they help", and larger batches).

Every variant runs the product's step as ``training.trainer.train`` does it: the preset's two views of a uint8
batch (``config.view1`` / ``config.view2``), the BYOL forward, backward, the optimiser step and the EMA update of
the target. What varies is only how the model runs:

- ``eager``: the trainer's CPU path today (float32, contiguous tensors);
- ``channels_last``: model and views in ``channels_last``;
- ``bf16``: the forward under CPU bf16 autocast (fast only where the CPU has native bf16: AVX512-BF16 or AMX);
- ``bf16_cl``: bf16 autocast and ``channels_last``;
- ``compile``: ``torch.compile(model)`` (inductor; needs a C++ compiler), its compilation timed apart;
- ``compile_cl``: both;
- ``batch128``: eager with twice the batch (the per-image rate is what compares).

The variants run in rounds, one block of ``--steps`` steps each, the order rotating per round, so that the load of
the machine falls on all of them alike; the table gives each variant's median over rounds, and its ratio to
``eager`` in images per second. The images are the shipped sample (``samples/kather2016``) decoded at the preset's
load size, drawn with replacement.

    .venv/bin/python benchmarks/bench_cpu_step.py --rounds 3 --steps 8
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_common import header, table  # noqa: E402

from training.byol import BYOL  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import list_images, load_uint8  # noqa: E402
from training.encoder import native_cpu_bf16  # noqa: E402
from training.optim import build_optimizer  # noqa: E402
from training.presets import get_preset  # noqa: E402

VARIANTS = ("eager", "channels_last", "bf16", "bf16_cl", "compile", "compile_cl", "batch128")


class Runner:
    """One variant's model, optimiser and step function (each variant trains its own copy from the same seed)."""

    def __init__(self, variant: str, config: TrainConfig) -> None:
        torch.manual_seed(config.seed)
        self.variant, self.config = variant, config
        self.batch = config.batch_size * (2 if variant == "batch128" else 1)
        self.cl = variant in ("channels_last", "bf16_cl", "compile_cl")
        model = BYOL(config.backbone, config.projection_dim, config.hidden_dim)
        if self.cl:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model.train()
        self.opt = build_optimizer(model.online_parameters(), config.optimizer, config.lr, config.momentum,
                                   config.weight_decay)  # fmt: skip
        self.forward: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = (
            torch.compile(model) if variant.startswith("compile") else model  # type: ignore[assignment]
        )
        self.gen = torch.Generator().manual_seed(1)
        self.compile_s = 0.0
        self.first_loss = float("nan")

    def step(self, x: torch.Tensor) -> tuple[float, float]:
        """One training step on uint8 ``x``: ``(seconds for the views, seconds for the rest)``; the first step's
        loss is kept (every variant's first step sees the same images, views and weights)."""
        t0 = time.perf_counter()
        v1, v2 = self.config.view1(x, self.gen), self.config.view2(x, self.gen)
        if self.cl:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.variant.startswith("bf16")):
            loss, _, _ = self.forward(v1, v2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.update_target(self.config.ema_rate)
        if not torch.isfinite(loss):
            raise SystemExit(f"{self.variant}: the loss is {loss.item()}")
        if math.isnan(self.first_loss):
            self.first_loss = float(loss.item())
        return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu-crops")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per variant per round")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        ap.error(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header(f"CPU training step by variant ({args.preset})"))
    print(
        f"torch threads: {torch.get_num_threads()}; CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"native bf16: {native_cpu_bf16()}"
    )
    config = get_preset(args.preset)
    files = list_images(ROOT / "samples" / "kather2016")
    images, _ = load_uint8(files, config.decode_size)
    rng = np.random.default_rng(0)

    def batch(n: int) -> torch.Tensor:
        return torch.from_numpy(images[rng.integers(0, len(images), n)])

    first = batch(2 * config.batch_size)
    runners = {}
    for v in variants:
        r = Runner(v, config)
        t0 = time.perf_counter()
        for _ in range(2):  # warm-up; compiles the compiled variants (forward and backward graphs)
            r.step(first[: r.batch] if math.isnan(r.first_loss) else batch(r.batch))
        r.compile_s = time.perf_counter() - t0
        runners[v] = r
        print(f"{v}: ready ({r.compile_s:.1f} s for 2 warm-up steps)", flush=True)
    rates: dict[str, list[float]] = {v: [] for v in variants}
    model_share: dict[str, list[float]] = {v: [] for v in variants}
    for rnd in range(args.rounds):
        order = variants[rnd % len(variants) :] + variants[: rnd % len(variants)]
        for v in order:
            r = runners[v]
            views = rest = 0.0
            for _ in range(args.steps):
                a, b = r.step(batch(r.batch))
                views, rest = views + a, rest + b
            rates[v].append(args.steps * r.batch / (views + rest))
            model_share[v].append(rest / args.steps)
        print(f"round {rnd + 1}: " + ", ".join(f"{v} {rates[v][-1]:.1f} img/s" for v in order), flush=True)
    base = statistics.median(rates["eager"]) if "eager" in rates else None
    rows = []
    for v in variants:
        med = statistics.median(rates[v])
        rows.append([v, runners[v].batch, round(med, 1), f"{min(rates[v]):.1f}–{max(rates[v]):.1f}",
                     round(1000 * statistics.median(model_share[v]), 1), round(runners[v].compile_s, 1),
                     f"{med / base:.2f}x" if base else "-"])  # fmt: skip
    print(table(rows, ["variant", "batch", "img/s (median of rounds)", "range", "model ms per step (no views)",
                       "2 warm-up steps s", "vs eager"]))  # fmt: skip
    # what each variant computes: its first step's loss beside eager's (same images, views and weights; batch128
    # sees twice the images). float32 variants agree to ~1e-5, bf16 differs by its rounding (~1e-2)
    ref = runners["eager"].first_loss if "eager" in runners else None
    losses = [f"{v} {r.first_loss:.6f}" + (f" (diff {abs(r.first_loss - ref):.2e})" if ref and v != "eager" else "")
              for v, r in runners.items()]  # fmt: skip
    print("first-step loss: " + ", ".join(losses))
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
