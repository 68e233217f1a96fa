"""Can training's better neighbourhoods find the tissue types for the ``texture`` read-out? (seed-0 tuning split)

``cpu-texture`` fits k-means + a shrinkage LDA on the untrained-like texture descriptor (stem + layer 1 channel
covariances). BYOL training tightens neighbourhoods (held-out kNN-5 +0.014) but loosens the global geometry a pair
threshold needs (BENCHMARKS, *Quality, 2026-12-03*). This script keeps the untrained twin's descriptor (its
geometry) and takes the *clusters* the LDA separates from elsewhere, all without labels:

- ``kmeans``: k-means on a source feature (the twin's own descriptor = the shipped read-out; the trained model's
  descriptor; the trained model's pooled layer 4), LDA on the twin's descriptor;
- ``scan``: SCAN (Van Gansbeke et al. 2020): mine each fit image's nearest neighbours in a source feature, from
  *other groups* only (LC25000 side A holds rotated / flipped copies of one source tile, whose neighbours are each
  other), train a linear softmax head on the twin's principal coordinates so that an image and its neighbours share
  a cluster (``-log <p_a, p_n>`` + entropy of the mean assignment), then LDA on the head's clusters.

Labels are used only to score (threshold on 2,000 side-A pairs, accuracy / AUC on 3,000 side-B pairs, kNN-5) and
for the printed diagnostics (cross-group neighbour purity, cluster NMI on the fit images).

    .venv/bin/python benchmarks/quality_sweep.py --aug histo-nocj --crop 64 --steps 140 --warmup 0.125 --name s0
    .venv/bin/python benchmarks/quality_cluster.py --model /tmp/histoquery-sweep/model_s0.pt
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lc_memory import OUT, ROOT, decoded_cache
from quality_repr import load_split, score, unit
from quality_texture import batches, signed_sqrt_cov

sys.path.insert(0, str(ROOT))
from training.readout import fit


def model_features(model: str | None, tag: str) -> tuple[dict[str, np.ndarray], np.ndarray, tuple]:
    """Texture descriptor (stem + layer 1) and pooled layer 4 of the fit / calibration / evaluation images."""
    cache = OUT / f"cluster_feats_{tag}.npz"
    enc, imgs, labels, split = load_split(model)
    if cache.exists():
        d = np.load(cache)
        return {k: d[k] for k in d.files}, labels, split
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for name, idx in zip(("fit", "a", "b"), split, strict=True):
            tex, l4 = [], []
            for x in batches(imgs, idx):
                stem = enc.relu(enc.bn1(enc.conv1(x)))
                l1 = enc.layer1(enc.maxpool(stem))
                tex.append(torch.cat([signed_sqrt_cov(stem), signed_sqrt_cov(l1)], 1))  # = readout.descriptors
                l4.append(enc.layer4(enc.layer3(enc.layer2(l1))).mean((2, 3)))
            out[f"tex_{name}"] = torch.cat(tex).numpy()
            out[f"l4_{name}"] = torch.cat(l4).numpy()
    np.savez(cache, **out)
    return out, labels, split


def pca(fit_x: np.ndarray, k: int = 64) -> tuple[np.ndarray, np.ndarray]:
    mean = fit_x.mean(0)
    return mean, np.linalg.svd(fit_x - mean, full_matrices=False)[2][:k]


def source_coords(x: np.ndarray) -> np.ndarray:
    mean, axes = pca(x)
    return unit((x - mean) @ axes.T)


def neighbours(z: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    s = z @ z.T
    s[groups[:, None] == groups[None, :]] = -9  # other groups only (and never itself)
    return np.argsort(-s, 1)[:, :k]


def scan_clusters(coords: np.ndarray, nn: np.ndarray, clusters: int, seed: int, epochs: int = 200,
                  entropy_weight: float = 5.0) -> np.ndarray:  # fmt: skip
    torch.manual_seed(seed)
    x = torch.as_tensor(coords / coords.std(0), dtype=torch.float32)
    head = torch.nn.Linear(x.shape[1], clusters)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    nbr = torch.as_tensor(nn)
    for _ in range(epochs):
        p = head(x).softmax(1)
        pick = nbr[torch.arange(len(x)), torch.randint(0, nbr.shape[1], (len(x),))]
        consistency = -torch.log((p * p[pick]).sum(1).clamp_min(1e-8)).mean()
        mean_p = p.mean(0)
        loss = consistency + entropy_weight * (mean_p * torch.log(mean_p.clamp_min(1e-8))).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return head(x).argmax(1).numpy()


def lda_readout(base: list[np.ndarray], assign: np.ndarray) -> list[np.ndarray]:
    """The shipped stored vector ``[unit(LDA), unit(principal)] / sqrt 2`` with the LDA fitted on ``assign``."""
    import warnings

    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    mean, axes = pca(base[0])
    coords = [(x - mean) @ axes.T for x in base]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.5).fit(coords[0], assign)
    n = len(set(assign.tolist())) - 1
    return [np.concatenate([unit(c @ lda.scalings_[:, :n]), unit(c)], 1) / 2**0.5 for c in coords]


def main() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="state_dict saved by quality_sweep.py (the trained model)")
    p.add_argument("--clusters", default="3,5,8")
    p.add_argument("--k", default="5,20")
    a = p.parse_args()
    twin, labels, (fit_idx, cal_a, ev_b) = model_features(None, "untrained")
    trained, _, _ = model_features(a.model, Path(a.model).stem)
    groups = np.load(decoded_cache())["groups"][fit_idx]
    lf, la, lb = labels[fit_idx], labels[cal_a], labels[ev_b]
    base = [twin[f"tex_{s}"] for s in ("fit", "a", "b")]
    print("shipped (twin k-means K=5 via training.readout.fit):", end=" ")
    f = fit(base[0], 64, 5, 0)
    c = [(x - f["mean"]) @ f["components"].T for x in base]
    print(score(*(np.concatenate([unit(x @ f["lda_axes"]), unit(x)], 1) for x in c[1:]), la, lb), flush=True)
    sources = {
        "twin-texture": twin["tex_fit"],
        "trained-texture": trained["tex_fit"],
        "trained-l4": trained["l4_fit"],
        "trained-texture+l4": np.concatenate(
            [
                unit(trained["tex_fit"] - trained["tex_fit"].mean(0)),
                unit(trained["l4_fit"] - trained["l4_fit"].mean(0)),
            ],
            1,
        ),
    }
    for name, feat in sources.items():
        z = source_coords(feat)
        for k in map(int, a.k.split(",")):
            nn = neighbours(z, groups, k)
            purity = float((lf[nn] == lf[:, None]).mean())
            print(f"{name}: cross-group {k}-NN label purity {purity:.3f}", flush=True)

        def report(label: str, assign: np.ndarray) -> None:
            vec = lda_readout(base, assign)
            sizes = np.bincount(assign).tolist()
            print(
                label, f"NMI={nmi(lf, assign):.3f} sizes={sizes} acc/auc/knn", score(vec[1], vec[2], la, lb), flush=True
            )

        coords = (base[0] - base[0].mean(0)) @ pca(base[0])[1].T
        for kc in map(int, a.clusters.split(",")):
            report(f"{name} kmeans K={kc}", KMeans(kc, n_init=4, random_state=0).fit_predict(z))
            for k in map(int, a.k.split(",")):
                report(f"{name} scan K={kc} k={k}", scan_clusters(coords, neighbours(z, groups, k), kc, 0))


if __name__ == "__main__":
    main()
