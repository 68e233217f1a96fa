"""Where BYOL training moves the ``texture`` read-out: one model (trained or untrained), the read-out's fitting step on
the covariance of each stage alone and of their combinations, on the seed-0 LC25000 split (the tuning split).

Per stage (stem = ``relu(bn1(conv1))``, ``layer1`` .. ``layer3``; stages wider than 64 channels projected to 64 by a
fixed random orthonormal matrix): the per-image channel covariance, signed square root, L2-normalised; then
``training.readout.fit`` (mean, 64 principal axes, k-means, shrinkage LDA) on 1,000 unlabeled side-A images and the
stored vector ``[w * unit(LDA), (1 - w) * unit(principal)]`` (square roots of the weights; the product's is
w = 0.5). Threshold on 2,000 balanced side-A pairs, accuracy / AUC on 3,000 side-B pairs, kNN-5 leave-one-out on
1,000 side-B tiles (``quality_repr.score``).

- ``--recalibrate-bn``: recompute every BatchNorm's running statistics on the 1,000 fit images first (no labels);
- ``--quadrant-axes``: before k-means + LDA, keep the principal axes that vary between images more than between the
  four 112 px quadrants of one image (weak views: the same tissue, no colour change), for stem + layer 1.

    .venv/bin/python benchmarks/quality_sweep.py --aug histo-nocj --crop 64 --steps 140 --warmup 0.125 --name s0
    .venv/bin/python benchmarks/quality_texture.py --untrained
    .venv/bin/python benchmarks/quality_texture.py --model /tmp/histoquery-sweep/model_s0.pt
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lc_memory import ROOT
from quality_repr import load_split, score, unit

sys.path.insert(0, str(ROOT))
from training.preprocess import normalize_batch, uint8_to_float
from training.readout import channel_products, fit

STAGES = ("stem", "l1", "l2", "l3")
COMBOS = (
    ("stem",),
    ("l1",),
    ("l2",),
    ("l3",),
    ("stem", "l1"),
    ("stem", "l1", "l2"),
    ("l1", "l2"),
    ("stem", "l2"),
    ("stem", "l1", "l3"),
)


def signed_sqrt_cov(maps: torch.Tensor, projection: torch.Tensor | None = None) -> torch.Tensor:
    upper = channel_products(maps, projection)
    return F.normalize(upper.sign() * upper.abs().sqrt(), dim=1)


def stage_descriptors(enc: torch.nn.Module, x: torch.Tensor, proj: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stem = enc.relu(enc.bn1(enc.conv1(x)))
    l1 = enc.layer1(enc.maxpool(stem))
    l2 = enc.layer2(l1)
    l3 = enc.layer3(l2)
    return {
        "stem": signed_sqrt_cov(stem),
        "l1": signed_sqrt_cov(l1),
        "l2": signed_sqrt_cov(l2, proj["l2"]),
        "l3": signed_sqrt_cov(l3, proj["l3"]),
    }


def batches(imgs: np.ndarray, idx: np.ndarray, size: int = 50):
    for s in range(0, len(idx), size):
        yield normalize_batch(uint8_to_float(torch.from_numpy(imgs[idx[s : s + size]])))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", help="state_dict saved by quality_sweep.py")
    p.add_argument("--untrained", action="store_true")
    p.add_argument("--recalibrate-bn", action="store_true")
    p.add_argument("--quadrant-axes", action="store_true")
    a = p.parse_args()
    if not a.model and not a.untrained:
        p.error("give --model PATH (a state_dict saved by quality_sweep.py) or --untrained")
    enc, imgs, labels, (fit_idx, cal_a, ev_b) = load_split(a.model)
    if a.recalibrate_bn:
        for mod in enc.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None  # cumulative average over the fit images
        enc.train()
        with torch.no_grad():
            for x in batches(imgs, fit_idx):
                enc(x)
        enc.eval()
    g = torch.Generator().manual_seed(0)
    proj = {k: torch.linalg.qr(torch.randn(c, 64, generator=g))[0].T for k, c in (("l2", 128), ("l3", 256))}

    def feats(idx: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, list[torch.Tensor]] = {k: [] for k in STAGES}
        with torch.inference_mode():
            for x in batches(imgs, idx):
                for k, v in stage_descriptors(enc, x, proj).items():
                    out[k].append(v)
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    f_fit, f_a, f_b = feats(fit_idx), feats(cal_a), feats(ev_b)
    la, lb = labels[cal_a], labels[ev_b]
    tag = "untrained" if a.untrained else Path(a.model).stem
    for parts in COMBOS:
        cat = [np.concatenate([f[k] for k in parts], 1) for f in (f_fit, f_a, f_b)]
        fitted = fit(cat[0], 64, 5, 0)
        coords = [(x - fitted["mean"]) @ fitted["components"].T for x in cat]
        for w in (0.5, 0.8):
            vec = [np.concatenate([w**0.5 * unit(c @ fitted["lda_axes"]), (1 - w) ** 0.5 * unit(c)], 1) for c in coords]
            print(tag, "+".join(parts), f"w={w}", "acc/auc/knn", score(vec[1], vec[2], la, lb), flush=True)
    if a.quadrant_axes:
        quadrant_axes(enc, imgs, fit_idx, proj, f_fit, f_a, f_b, la, lb, tag)


def quadrant_axes(enc, imgs, fit_idx, proj, f_fit, f_a, f_b, la, lb, tag) -> None:  # noqa: ANN001
    """Generalised eigen-axes of the between-image against the within-image (quadrant) scatter, then k-means + LDA."""
    import scipy.linalg as sl
    from sklearn.cluster import KMeans
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    quads = []
    with torch.inference_mode():
        for x in batches(imgs, fit_idx):
            per = []
            for i, j in ((0, 0), (0, 112), (112, 0), (112, 112)):
                dq = stage_descriptors(enc, x[:, :, i : i + 112, j : j + 112], proj)
                per.append(torch.cat([dq["stem"], dq["l1"]], 1))
            quads.append(torch.stack(per, 1))
    q = torch.cat(quads).numpy()
    xf, xa, xb = (np.concatenate([f["stem"], f["l1"]], 1) for f in (f_fit, f_a, f_b))
    mu = xf.mean(0)
    axes = np.linalg.svd(xf - mu, full_matrices=False)[2][:64]
    total = np.cov(((xf - mu) @ axes.T).T)
    cq = (q - mu) @ axes.T
    within_dev = cq - cq.mean(1, keepdims=True)
    within = np.einsum("nqi,nqj->ij", within_dev, within_dev) / (len(cq) * 3)
    print(tag, "quadrant scatter / total scatter (trace)", round(float(np.trace(within) / np.trace(total)), 3))
    for k in (16, 32, 48):
        for reg in (0.1, 1.0):
            _, vecs = sl.eigh(total, within + reg * np.trace(within) / 64 * np.eye(64))
            v = vecs[:, ::-1][:, :k]
            z = [(x - mu) @ axes.T @ v for x in (xf, xa, xb)]
            clusters = KMeans(5, n_init=4, random_state=0).fit_predict(unit(z[0]))
            lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.5).fit(z[0], clusters).scalings_[:, :4]
            vec = [np.concatenate([unit(zz @ lda), unit(zz)], 1) for zz in z]
            print(tag, f"quadrant axes k={k} reg={reg}", "acc/auc/knn", score(vec[1], vec[2], la, lb), flush=True)


if __name__ == "__main__":
    main()
