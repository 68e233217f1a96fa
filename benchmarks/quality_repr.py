"""Which representation to store: one trained (or untrained) encoder, many read-outs, on the seed-0 LC25000 split.

Loads a model saved by ``quality_sweep.py`` (``--model /tmp/histoquery-sweep/model_<name>.pt``; ``--untrained`` for
the same-seed random twin), embeds 1,000 unlabeled side-A images (the fit set for means / PCA: no labels used), 600
side-A images (threshold on 2,000 balanced pairs) and 1,000 side-B images (accuracy / AUC on 3,000 balanced pairs,
leave-one-out kNN-5), then scores each read-out:

- ``l4`` (the product's pooled backbone feature), ``l3`` (layer-3 pooled), ``l34`` (both, each L2-normalised);
- ``gem`` (generalised-mean pooling of layer 4, p = 3);
- with ``--second-order``: ``l2`` (layer-2 pooled) and second-order pooling: ``l2gram`` / ``l3gram`` (Gram of the
  map), ``l2cov`` / ``l3cov`` (per-image channel covariance), ``l3rp64`` / ``l4rp64`` (Gram of 64 random channel
  projections); the product's ``texture`` read-out (``training/readout.py``) grew out of these;
- with ``--fusion``: the product's label-free discriminant step (``training.readout.fit``) on pooled layer 4
  (``l4_disc``), the ``texture`` read-out of this model (``tex_self``) and of its untrained twin (``tex_twin``), and
  the twin's texture side by side with this model's ``l4_ctr`` / ``l4_disc`` at weights 0.25 / 0.5 / 0.75;
- with ``--tta``: every pooled read-out (and the texture read-outs) averaged over the 8 dihedral views of each
  image (4 rotations × mirror). LC25000 already holds rotated and mirrored copies of each source tile, and this
  script's pairs may join two copies of one tile (``quality.py``'s may not), so its kNN gain here is partly copies
  becoming identical;
- post-processing fitted on the unlabeled fit set: ``ctr`` (centring), ``pcaK`` (centre + top-K principal axes),
  ``whtK`` (PCA-whitened to K dims), ``sqrt`` (signed square root, then centring).

    .venv/bin/python benchmarks/quality_repr.py --untrained --seed 0
    .venv/bin/python benchmarks/quality_repr.py --model /tmp/histoquery-sweep/model_r1.pt
    .venv/bin/python benchmarks/quality_repr.py --model /tmp/histoquery-sweep/model_long.pt --fusion
"""

# ruff: noqa: E402, E501
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lc_memory import ROOT, decoded_cache, group_split

sys.path.insert(0, str(ROOT))
from training.byol import BYOL
from training.preprocess import normalize_batch, uint8_to_float
from training.probe import balanced_pairs, best_threshold, roc_auc
from training.readout import TextureHead, channel_products, fit_state
from training.readout import fit as fit_readout


def maps(enc: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
    l2 = enc.layer2(enc.layer1(x))
    l3 = enc.layer3(l2)
    return l2, l3, enc.layer4(l3)


def gram(m: torch.Tensor, proj: torch.Tensor | None = None, centre: bool = False) -> np.ndarray:
    """Second-order pooling of a feature map (``training.readout.channel_products``): Gram, or covariance with
    ``centre``, optionally of randomly projected channels."""
    return channel_products(m, proj, centre).numpy()


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 dihedral views of a batch (4 rotations of it and of its mirror image)."""
    return [torch.rot90(v, k, (2, 3)) for v in (x, x.flip(3)) for k in range(4)]


def features(enc: torch.nn.Module, imgs: np.ndarray, idx: np.ndarray, size: int, second: bool = False,
             tta: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    out: dict[str, list[np.ndarray]] = {"l3": [], "l4": [], "gem": []}
    if second:
        out.update({"l2": [], "l2gram": [], "l2cov": [], "l3gram": [], "l3cov": [], "l3rp64": [], "l4rp64": []})
        g = torch.Generator().manual_seed(7)
        p3 = torch.randn(64, 256, generator=g) / 16
        p4 = torch.randn(64, 512, generator=g) / 22.6
    with torch.inference_mode():
        for s in range(0, len(idx), 100):
            x = normalize_batch(uint8_to_float(torch.from_numpy(imgs[idx[s : s + 100]])))
            if size != 224:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            if tta:
                views = [maps(enc, v) for v in dihedral(x)]
                out["l3"].append(torch.stack([m[1].mean((2, 3)) for m in views]).mean(0).numpy())
                out["l4"].append(torch.stack([m[2].mean((2, 3)) for m in views]).mean(0).numpy())
                out["gem"].append(torch.stack([m[2].clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3)
                                               for m in views]).mean(0).numpy())  # fmt: skip
                continue
            l2, l3, l4 = maps(enc, x)
            if second:
                out["l2"].append(l2.mean((2, 3)).numpy())
                out["l2gram"].append(gram(l2))
                out["l2cov"].append(gram(l2, centre=True))
                out["l3gram"].append(gram(l3))
                out["l3cov"].append(gram(l3, centre=True))
                out["l3rp64"].append(gram(l3, p3))
                out["l4rp64"].append(gram(l4, p4))
            out["l3"].append(l3.mean((2, 3)).numpy())
            out["l4"].append(l4.mean((2, 3)).numpy())
            out["gem"].append(l4.clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def readouts(fit: np.ndarray, xs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    mu = fit.mean(0)
    res = {"raw": xs, "ctr": [x - mu for x in xs]}
    u, s, vt = np.linalg.svd(fit - mu, full_matrices=False)
    for k in (8, 16, 32, 64, 128):
        if k <= len(s):
            res[f"pca{k}"] = [(x - mu) @ vt[:k].T for x in xs]
            res[f"wht{k}"] = [(x - mu) @ vt[:k].T / (s[:k] + s[0] * 1e-3) for x in xs]
    sq = lambda x: np.sign(x) * np.sqrt(np.abs(x))  # noqa: E731
    mus = sq(fit).mean(0)
    res["sqrt"] = [sq(x) - mus for x in xs]
    return res


def score(xa: np.ndarray, xb: np.ndarray, la: np.ndarray, lb: np.ndarray) -> tuple[float, float, float]:
    xa, xb = unit(xa), unit(xb)
    i, j, s = balanced_pairs(la, 2000, 1)
    _, thr = best_threshold((xa[i] * xa[j]).sum(1), s)
    i, j, s = balanced_pairs(lb, 3000, 2)
    sim = (xb[i] * xb[j]).sum(1)
    sm = xb @ xb.T
    np.fill_diagonal(sm, -9)
    nn = np.argsort(-sm, 1)[:, :5]
    pred = [max(set(lb[r]), key=list(lb[r]).count) for r in nn]
    return (
        round(float(((sim >= thr) == s).mean()), 3),
        round(roc_auc(sim, s), 3),
        round(float(np.mean(np.array(pred) == lb)), 3),
    )


def discriminant(fit: np.ndarray, xs: list[np.ndarray], components: int = 64, clusters: int = 5) -> list[np.ndarray]:
    """The product's label-free read-out step on any features: ``training.readout.fit`` (principal axes, k-means,
    shrinkage LDA), then ``TextureHead.project`` (what the ``texture`` representation stores)."""
    state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in fit_readout(fit, components, clusters, 0).items()}
    head = TextureHead(torch.nn.Identity(), {**state, "stage1_projection": torch.zeros(0)})
    return [head.project(torch.from_numpy(x)).numpy() for x in xs]


def texture(enc: torch.nn.Module, imgs: np.ndarray, idxs: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
    """The product's ``texture`` read-out of ``enc`` (``training.readout.fit_state`` on the images ``idxs[0]``, then
    ``TextureHead``) for each further index set; with ``tta``, averaged over the 8 dihedral views."""
    state = fit_state(enc, imgs[idxs[0]], 64, 5, 0, torch.device("cpu"), lambda u: normalize_batch(uint8_to_float(u)))
    head = TextureHead(enc, state).eval()

    def embed(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(v) for v in dihedral(x)]).mean(0) if tta else head(x)

    with torch.inference_mode():
        return [torch.cat([embed(normalize_batch(uint8_to_float(torch.from_numpy(imgs[idx[s : s + 50]]))))
                           for s in range(0, len(idx), 50)]).numpy() for idx in idxs[1:]]  # fmt: skip


def fused(a: list[np.ndarray], b: list[np.ndarray], w: float) -> list[np.ndarray]:
    """Side by side, each L2-normalised, weights ``sqrt(w)`` / ``sqrt(1 - w)``: cosine = w cos_a + (1 - w) cos_b."""
    return [np.concatenate([np.sqrt(w) * unit(x), np.sqrt(1 - w) * unit(y)], 1) for x, y in zip(a, b, strict=True)]


def load_split(model_path: str | None, backbone: str = "resnet18", proj: int = 128, hidden: int = 512, seed: int = 0
               ) -> tuple[torch.nn.Module, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:  # fmt: skip
    """The online encoder of a ``quality_sweep.py`` state_dict (or the seed's untrained twin when None), in eval
    mode, and the seed-0 split: decoded images, labels, and the indices of the 1,000 unlabeled side-A fit images,
    the 600 side-A calibration images and the 1,000 side-B evaluation images."""
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    model = BYOL(backbone, proj, hidden)
    if model_path:
        model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    d = np.load(decoded_cache())
    imgs, labels, groups = d["imgs"], d["labels"], d["groups"]
    side_a, _, cal_a, ev_b = group_split(labels, groups)
    rest = np.setdiff1d(side_a, cal_a)
    fit_idx = np.random.default_rng(5).choice(rest, min(1000, len(rest)), replace=False)
    return model.online_encoder.eval(), imgs, labels, (fit_idx, cal_a, ev_b)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", help="state_dict saved by quality_sweep.py")
    p.add_argument("--untrained", action="store_true")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--proj", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of the untrained twin")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--second-order", action="store_true", help="also score second-order (Gram / covariance) pooling")
    p.add_argument("--fusion", action="store_true",
                   help="score the label-free discriminant step on pooled features (l4_disc), the texture read-outs of "
                        "this model and of its untrained twin, and the untrained texture side by side with l4 ctr / disc")  # fmt: skip
    p.add_argument("--tta", action="store_true", help="average each read-out over the 8 dihedral views of an image")
    a = p.parse_args()
    if a.tta and a.second_order:
        p.error("--tta applies to the pooled and texture read-outs, not to --second-order")
    if not a.model and not a.untrained:
        p.error("give --model PATH (a state_dict saved by quality_sweep.py) or --untrained")
    if a.model and not Path(a.model).is_file():
        p.error(f"--model {a.model}: no such file (quality_sweep.py saves /tmp/histoquery-sweep/model_<name>.pt)")
    enc, imgs, labels, (fit_idx, cal_a, ev_b) = load_split(a.model, a.backbone, a.proj, a.hidden, a.seed)
    f_fit, f_a, f_b = (features(enc, imgs, idx, a.size, a.second_order, a.tta) for idx in (fit_idx, cal_a, ev_b))
    f_fit["l34"], f_a["l34"], f_b["l34"] = (
        np.concatenate([unit(f["l3"]), unit(f["l4"])], 1) for f in (f_fit, f_a, f_b)
    )
    results = {}
    if a.fusion:
        lab = labels[cal_a], labels[ev_b]
        mu = f_fit["l4"].mean(0)
        cands = {"l4_ctr": [f_a["l4"] - mu, f_b["l4"] - mu],
                 "l4_disc": discriminant(f_fit["l4"], [f_a["l4"], f_b["l4"]])}  # fmt: skip
        cands["tex_self"] = texture(enc, imgs, [fit_idx, cal_a, ev_b], a.tta)
        twin = load_split(None, a.backbone, a.proj, a.hidden, a.seed)[0]
        cands["tex_twin"] = texture(twin, imgs, [fit_idx, cal_a, ev_b], a.tta)
        for w in (0.25, 0.5, 0.75):
            for base in ("l4_ctr", "l4_disc"):
                cands[f"tex_twin+{base}@{w}"] = fused(cands["tex_twin"], cands[base], w)
        for name, (xa, xb) in cands.items():
            results[name] = score(xa, xb, *lab)
            print(f"{name:24s} acc/auc/knn {results[name]}", flush=True)
        print(json.dumps({"model": a.model or f"untrained seed {a.seed}", "tta": a.tta, "results": results}))
        return
    feats = ["l4", "l3", "l34", "gem"]
    if a.second_order:
        feats = ["l3", "l2", "l2gram", "l2cov", "l3gram", "l3cov", "l3rp64", "l4rp64"]
    for feat in feats:
        for name, (xa, xb) in readouts(f_fit[feat], [f_a[feat], f_b[feat]]).items():
            results[f"{feat}_{name}"] = score(xa, xb, labels[cal_a], labels[ev_b])
            print(f"{feat}_{name:7s} acc/auc/knn {results[f'{feat}_{name}']}", flush=True)
    print(json.dumps({"model": a.model or f"untrained seed {a.seed}", "tta": a.tta, "results": results}))


if __name__ == "__main__":
    main()
