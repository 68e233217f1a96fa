"""GPU training throughput: end-to-end (decode on CPU workers + GPU augmentation + BYOL step) vs the bare step on
tensors already on the device, and vs byol-pytorch (lucidrains, pinned 0.8.2) on the same GPU, backbone, batch,
precision and data. Targets: end-to-end / bare >= 0.9; ours / byol-pytorch >= 1.3.

    .venv/bin/pip install -e '.[bench]'     # byol-pytorch==0.8.2
    .venv/bin/python benchmarks/bench_train_gpu.py --device cuda [--data ../shared/data/lc25000_lung]
        [--backbone resnext50_32x4d --image-size 224 --batch-size 128 --steps 40 --warmup 10 --workers 16]

byol-pytorch 0.8.2 has no ``use_simplicial_embeddings`` argument (added in later versions): its BYOL is already the
paper's. It is run twice: (a) its own default in-forward augmentation on GPU batches, (b) the study's way, BYOL's
PIL augmentations in the DataLoader workers with ``augment_fn`` = identity.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_common import header, pil_byol_transforms, table  # noqa: E402

from training.byol import BYOL  # noqa: E402
from training.data import ImageFiles, collate, list_images  # noqa: E402
from training.optim import build_optimizer  # noqa: E402
from training.presets import get_preset  # noqa: E402
from training.trainer import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lc25000_lung"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step(args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of our BYOL step alone: views already normalised on the device, bf16 autocast, channels_last."""
    torch.manual_seed(0)
    model = BYOL(args.backbone, 512, 2048).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = build_optimizer(model.online_parameters(), "sgd", 3e-4, 0.9, 0.0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    v1 = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    v2 = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _, _ = model(v1, v2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update_target(0.99)

    for _ in range(args.warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def end_to_end(args: argparse.Namespace, data: Path, device: torch.device) -> float:
    """Images/s of ``training.trainer.train`` in steady state (steps after the warm-up), data loading included."""
    config = get_preset("paper").with_overrides(
        {"backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size, "epochs": 1,
         "num_workers": args.workers, "device": str(args.device)}
    )  # fmt: skip
    marks: dict[int, float] = {}

    def progress(step: int, total: int, info: dict[str, float]) -> None:
        if step in (args.warmup, args.warmup + args.steps):
            _sync(device)
            marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        train(data, config, Path(tmp) / "bench.pt", progress=progress, max_steps_per_epoch=args.warmup + args.steps)
    return args.steps * args.batch_size / (marks[args.warmup + args.steps] - marks[args.warmup])


class _PILViews(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The study's data path: decode, then BYOL's two PIL views per image in the worker."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, size
        self.t1, self.t2 = pil_byol_transforms(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            rgb = im.convert("RGB")
        return self.t1(rgb), self.t2(rgb)


def run_byol_pytorch(args: argparse.Namespace, data: Path, device: torch.device, pil_views: bool) -> float:
    """Images/s of lucidrains' BYOL (same backbone, batch, bf16 autocast, SGD) fed from the same files."""
    from byol_pytorch import BYOL as LucidBYOL
    from torch import nn
    from torchvision import models

    torch.manual_seed(0)
    net = getattr(models, args.backbone)(weights=None).to(device).to(memory_format=torch.channels_last)
    kwargs: dict[str, Any] = {"hidden_layer": "avgpool", "projection_size": 512, "projection_hidden_size": 2048,
                              "moving_average_decay": 0.99}  # fmt: skip
    if pil_views:
        kwargs["augment_fn"] = nn.Identity()
    learner = LucidBYOL(net, image_size=args.image_size, **kwargs).to(device)
    opt = torch.optim.SGD(learner.parameters(), lr=3e-4, momentum=0.9)
    files = list_images(data)
    common: dict[str, Any] = {
        "batch_size": args.batch_size, "shuffle": True, "num_workers": args.workers, "pin_memory": True,
        "drop_last": True, "persistent_workers": True, "prefetch_factor": 4,
    }  # fmt: skip
    if pil_views:
        loader: Any = torch.utils.data.DataLoader(_PILViews(files, args.image_size), **common)
    else:
        loader = torch.utils.data.DataLoader(ImageFiles(files, args.image_size), collate_fn=collate, **common)
    n, t0 = 0, 0.0
    while n < args.warmup + args.steps:
        for batch in loader:
            if n == args.warmup:
                _sync(device)
                t0 = time.perf_counter()
            if n == args.warmup + args.steps:
                break
            if pil_views:
                # identity augment: feed view 1 (the module applies augment_fn to one batch for both views);
                # the second view's PIL cost is already paid in the workers, as in the study's pipeline
                x = batch[0].to(device, non_blocking=True)
            else:
                x = batch.images.to(device, non_blocking=True).float().div_(255)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = learner(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            learner.update_moving_average()
            n += 1
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--backbone", default="resnext50_32x4d")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--skip-byol-pytorch", action="store_true")
    args = p.parse_args()
    print(header("Training throughput on GPU"))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("\nnot measured: no CUDA GPU here (run with --device cuda on a GPU machine)")
        return
    if device.type != "cuda":
        print("SMOKE RUN ON CPU: these numbers say nothing about GPU throughput")
    print(f"data: {args.data} ({len(list_images(args.data))} images, read from ../shared/data when present)")
    print(f"setup: {args.backbone}, {args.image_size} px, batch {args.batch_size}, bf16 autocast, channels_last, "
          f"SGD, {args.warmup} warm-up + {args.steps} timed steps, {args.workers} workers")  # fmt: skip
    torch.backends.cudnn.benchmark = True  # as training.trainer does on CUDA
    bare = bare_step(args, device)
    e2e = end_to_end(args, args.data, device)
    rows = [["ours, bare step (tensors on device)", bare, 1.0, ""],
            ["ours, end to end (decode + GPU aug + step)", e2e, e2e / bare, ">= 0.9"]]  # fmt: skip
    if not args.skip_byol_pytorch:
        import byol_pytorch  # noqa: F401

        for pil_views, name in ((False, "its default GPU aug"), (True, "study's PIL BYOL aug in workers")):
            theirs = run_byol_pytorch(args, args.data, device, pil_views)
            rows.append([f"byol-pytorch 0.8.2, {name}", theirs, e2e / theirs, ">= 1.3 (ours e2e / this)"])
    print(table(rows, ["pipeline", "images/s", "ratio", "target"]))


if __name__ == "__main__":
    main()
