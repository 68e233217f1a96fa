"""Mutation check of ``tests/training/test_learns.py``: run its learning run with one BYOL part broken.

    .venv/bin/python scripts/mutation_check_learns.py none 0          # the real thing, seed 0 (must pass)
    .venv/bin/python scripts/mutation_check_learns.py no_predictor 0  # must fail (also: identical, no_stopgrad, no_ema)

Prints one JSON line: the held-out instance AUC of the trained and the untrained encoder, the gain, the online/target
weight gap and whether the test's assertions would pass. The mutations are monkeypatches of ``training.byol.BYOL``;
``EMA=``, ``LR=`` and ``EPOCHS=`` in the environment override the test's constants.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "training")]

import test_learns as tl  # noqa: E402
import torch  # noqa: E402

import training.backbones as backbones  # noqa: E402
import training.byol as byol  # noqa: E402

MUTATIONS = ("none", "identical", "no_predictor", "no_stopgrad", "no_ema")


def apply(mutation: str) -> None:
    forward, update = byol.BYOL.forward, byol.BYOL.update_target
    if mutation == "identical":  # both views are view 1
        byol.BYOL.forward = lambda self, a, b: forward(self, a, a)  # type: ignore[method-assign,assignment]
    elif mutation == "no_predictor":  # the online projection regresses the target's directly

        def no_predictor(self: byol.BYOL, a: torch.Tensor, b: torch.Tensor):  # type: ignore[no-untyped-def]
            self.predictor = torch.nn.Identity()  # type: ignore[assignment]
            return forward(self, a, b)

        byol.BYOL.forward = no_predictor  # type: ignore[method-assign,assignment]
    elif mutation == "no_stopgrad":  # the target branch is the online network, gradient flowing through it

        def no_stopgrad(self: byol.BYOL, a: torch.Tensor, b: torch.Tensor):  # type: ignore[no-untyped-def]
            x = torch.cat([a, b])
            h = self.online_encoder(x)
            z = self.online_projector(h)
            q, n = self.predictor(z), a.shape[0]
            loss = (byol.byol_loss(q[:n], z[n:]) + byol.byol_loss(q[n:], z[:n])).mean()
            return loss, h.detach(), z.detach()

        byol.BYOL.forward = no_stopgrad  # type: ignore[method-assign,assignment]
    elif mutation == "no_ema":  # the target is a copy of the online network after every step
        byol.BYOL.update_target = lambda self, rate: update(self, 0.0)  # type: ignore[method-assign,assignment]
    elif mutation != "none":
        raise SystemExit(f"unknown mutation {mutation!r}: choose one of {', '.join(MUTATIONS)}")


def main() -> None:
    mutation, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    for name, attr, cast in (("LR", "LR", float), ("EMA", "EMA_RATE", float), ("EPOCHS", "EPOCHS", int)):
        if os.environ.get(name):
            setattr(tl, attr, cast(os.environ[name]))
    backbones.BACKBONES["small-cnn"] = (tl.SmallCNN, 128)
    apply(mutation)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        trained, untrained, gap = tl.learning_run(Path(tmp), seed)
    row = {
        "mutation": mutation,
        "seed": seed,
        "untrained": round(untrained, 3),
        "trained": round(trained, 3),
        "gain": round(trained - untrained, 3),
        "gap": round(gap, 5),
        "test_passes": trained - untrained >= tl.MARGIN and gap > 1e-4,
        "lr": tl.LR,
        "ema": tl.EMA_RATE,
        "epochs": tl.EPOCHS,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
