"""Fast, in-memory exploration of CPU BYOL recipes on LC25000 (the rows "What was tried" in BENCHMARKS.md).

Not the product's path (``benchmarks/quality.py`` is): it decodes LC25000 lung once into memory, splits it by
``groups.csv`` group (seed 0), trains the product's ``BYOL`` with the product's ``ViewTransform`` and optimiser for a
time budget, then embeds 600 side-A images (threshold on 2,000 balanced pairs) and 1,000 side-B images (accuracy /
AUC on 3,000 balanced pairs, leave-one-out kNN-5), for the backbone features and the projection, raw, centred and
standardised (means from side A). Pairs here may join two images of one source tile; ``quality.py``'s may not.

    .venv/bin/python benchmarks/quality_sweep.py --untrained --name u18
    .venv/bin/python benchmarks/quality_sweep.py --aug histo-nocj --crop 64 --minutes 6 --name r6
    .venv/bin/python benchmarks/quality_sweep.py --aug histo --crop 32 --scale 0.02,0.1 --minutes 6 --name r3
    .venv/bin/python benchmarks/quality_sweep.py --aug histo-nocj --crop 64 --steps 700 --evals 2 --warmup 0.125 --local 2 --name mc2

``--aug``: ``paper`` (the study's colour views), ``histo`` (+ vertical flips, 90° rotations, stain jitter),
``histo-nocj`` (histo without colour jitter and grayscale), ``histo-light`` (histo with half-strength jitter).
"""

# ruff: noqa: E401, E402, E501, E701, E702, E731, SIM108
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from lc_memory import OUT, ROOT, decoded_cache, group_split

sys.path.insert(0, str(ROOT))
from training.augment import ViewTransform
from training.byol import BYOL, byol_loss, cosine_ema_rate
from training.optim import build_optimizer, lr_at
from training.preprocess import normalize_batch, uint8_to_float
from training.probe import balanced_pairs, best_threshold, roc_auc

p = argparse.ArgumentParser()
p.add_argument("--backbone", default="resnet18")
p.add_argument("--crop", type=int, default=64)
p.add_argument("--scale", default="0.05,0.3")
p.add_argument("--minutes", type=float, default=5)
p.add_argument("--steps", type=int, default=0, help="fixed step count (load-independent); overrides --minutes")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--opt", default="adamw")
p.add_argument("--wd", type=float, default=1e-4)
p.add_argument("--ema", type=float, default=0.99)
p.add_argument("--ema-sched", default="constant")
p.add_argument("--warmup", type=float, default=0.05)
p.add_argument("--eval-size", type=int, default=224)
p.add_argument("--aug", default="paper")
p.add_argument("--proj", type=int, default=128)
p.add_argument("--hidden", type=int, default=512)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--untrained", action="store_true")
p.add_argument("--evals", type=int, default=1)
p.add_argument("--maxpool", type=int, default=1)
p.add_argument(
    "--freeze-early",
    action="store_true",
    help="keep the stem and layer 1 at their random init (BN in eval mode): only layers 2-4 train",
)
p.add_argument("--name", default="run")
p.add_argument("--amp", action="store_true", help="training forward under CPU bf16 autocast (evaluation stays float32)")
p.add_argument("--channels-last", action="store_true", help="model and training views in channels_last")
p.add_argument("--also-target", action="store_true", help="also evaluate the EMA target encoder at each point")
p.add_argument(
    "--nn",
    type=int,
    default=0,
    help="mean-shift (MSF) targets: pull each prediction to the target and its K-1 nearest bank neighbours",
)
p.add_argument(
    "--local",
    type=int,
    default=0,
    help="multi-crop: N extra small views per image through the online network only; each regresses both global"
    " views' targets (SwAV / DINO style local crops)",
)
p.add_argument("--local-crop", type=int, default=32, help="side of the --local views")
p.add_argument("--local-scale", default="0.01,0.05", help="area fraction range of the --local views' crops")
p.add_argument("--bank", type=int, default=2048, help="memory bank size (target projections) for --nn")
p.add_argument(
    "--nn-graph",
    type=int,
    default=0,
    help="positives from other tiles: view 2 is cut from one of each image's K nearest training images of *other*"
    " groups in the untrained twin's texture space (stem + layer 1 covariances, 64 principal axes; no labels)",
)
a = p.parse_args()
torch.set_num_threads(2)
torch.manual_seed(a.seed)
d = np.load(decoded_cache())
imgs, labels, groups = d["imgs"], d["labels"], d["groups"]
A, B, calA, evB = group_split(labels, groups)
train_x = torch.from_numpy(imgs[A])
sc = tuple(float(x) for x in a.scale.split(","))
extras = {}
if a.aug in ("histo", "histo-nocj", "histo-light"):
    extras = dict(vflip_prob=0.5, rot90_prob=1.0, stain_jitter_prob=0.5)
v1 = ViewTransform(output_size=a.crop, crop_scale=sc, blur_prob=1.0, solarize_prob=0.0, **extras)
v2 = ViewTransform(output_size=a.crop, crop_scale=sc, blur_prob=0.1, solarize_prob=0.2, **extras)
if a.aug == "histo-nocj":
    v1 = dataclasses.replace(v1, jitter_prob=0.0, grayscale_prob=0.0)
    v2 = dataclasses.replace(v2, jitter_prob=0.0, grayscale_prob=0.0)
if a.aug == "histo-light":
    kw = dict(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.02, grayscale_prob=0.1)
    v1 = dataclasses.replace(v1, **kw)
    v2 = dataclasses.replace(v2, **kw)
vl = dataclasses.replace(v2, output_size=a.local_crop, crop_scale=tuple(float(x) for x in a.local_scale.split(",")))
model = BYOL(a.backbone, a.proj, a.hidden)
if not a.maxpool:
    model.online_encoder.maxpool = torch.nn.Identity()
    model.target_encoder.maxpool = torch.nn.Identity()
if a.freeze_early:  # the texture read-out's stages stay the untrained twin's; training can only add deeper
    for enc_ in (model.online_encoder, model.target_encoder):
        for m in (enc_.conv1, enc_.bn1, enc_.layer1):
            m.requires_grad_(False)
            m.eval()  # BN uses its (untouched) running statistics in training as in evaluation
            m.train = lambda mode=True, m=m: m  # model.train() leaves them in eval mode
if a.channels_last:
    model = model.to(memory_format=torch.channels_last)
opt = build_optimizer([q for q in model.online_parameters() if q.requires_grad], a.opt, a.lr, 0.9, a.wd)


def embed(idx, size, target=False):
    enc, proj = (model.target_encoder, model.target_projector) if target else (model.online_encoder, model.online_projector)
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), 100):
            x = torch.from_numpy(imgs[idx[s : s + 100]])
            x = normalize_batch(uint8_to_float(x))
            if size != 224:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            f = enc(x).float()
            out.append(torch.cat([f, proj(f).float()], 1))
    model.train()
    return torch.cat(out).numpy()


def evaluate(tag):
    t = time.time()
    EA, EB = embed(calA, a.eval_size), embed(evB, a.eval_size)
    np.savez(OUT / f"emb_{a.name}.npz", ea=EA, eb=EB, calA=calA, evB=evB)
    res = {"tag": tag}
    fd = model.feature_dim
    for rep in ("bb", "pj"):
        ea, eb = (EA[:, :fd], EB[:, :fd]) if rep == "bb" else (EA[:, fd:], EB[:, fd:])
        evaluate_one(ea, eb, res, rep)
    if a.also_target:
        TA, TB = embed(calA, a.eval_size, True), embed(evB, a.eval_size, True)
        evaluate_one(TA[:, :fd], TB[:, :fd], res, "tgt_bb")
    res["eval_s"] = round(time.time() - t, 1)
    print(json.dumps(res), flush=True)
    torch.save(model.state_dict(), OUT / f"model_{a.name}.pt")
    if a.evals > 1:  # each point of the curve, for quality_texture.py
        torch.save(model.state_dict(), OUT / f"model_{a.name}_step{step if not a.untrained else 0}.pt")


def evaluate_one(ea, eb, res, rep):
    sd = ea.std(0) + 1e-6
    for cname, mu, div in (("raw", 0, 1), ("ctr", ea.mean(0), 1), ("std", ea.mean(0), sd)):
        xa, xb = (ea - mu) / div, (eb - mu) / div
        xa /= np.linalg.norm(xa, axis=1, keepdims=True)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        i, j, s = balanced_pairs(labels[calA], 2000, 1)
        _, thr = best_threshold((xa[i] * xa[j]).sum(1), s)
        i, j, s = balanced_pairs(labels[evB], 3000, 2)
        sim = (xb[i] * xb[j]).sum(1)
        cname2 = rep + "_" + cname
        res[cname2] = (round(float(((sim >= thr) == s).mean()), 3), round(roc_auc(sim, s), 3))
        # kNN on B leave one out (5)
        S = xb @ xb.T
        np.fill_diagonal(S, -9)
        nn = np.argsort(-S, 1)[:, :5]
        lb = labels[evB]
        pred = [max(set(lb[r]), key=list(lb[r]).count) for r in nn]
        res[cname2 + "_knn"] = round(float(np.mean(np.array(pred) == lb)), 3)


bank = F.normalize(torch.randn(a.bank, a.proj), dim=1)
bank_ptr = 0


def msf_loss(x1, x2):
    """Mean-shift BYOL (Koohpayegani et al. 2021): the target of each prediction is the other view's target
    projection and its K-1 nearest neighbours in a bank of past target projections (K = 1 is BYOL)."""
    global bank, bank_ptr
    images = torch.cat([x1, x2], 0)
    pred = F.normalize(model.predictor(model.online_projector(model.online_encoder(images))), dim=1)
    with torch.no_grad():
        t = F.normalize(model.target_projector(model.target_encoder(images)), dim=1)
    b = x1.shape[0]
    t_swap = torch.cat([t[b:], t[:b]], 0)  # prediction of view 1 regresses view 2's target and vice versa
    filled = bank[: min(step * b, a.bank)]  # the bank fills from index 0 (the current batch is not in it yet)
    targets = t_swap[:, None, :]
    if len(filled) >= a.nn - 1:
        nbr = filled[(t_swap @ filled.T).topk(a.nn - 1, dim=1).indices]
        targets = torch.cat([targets, nbr], 1)  # (2B, K, P)
    loss = (2 - 2 * (pred[:, None, :] * targets).sum(-1)).mean(1).mean() * 2
    with torch.no_grad():
        new = t[:b]
        idx = (torch.arange(b) + bank_ptr) % a.bank
        bank[idx] = new
        bank_ptr = (bank_ptr + b) % a.bank
    return loss


def multicrop_loss(x1, x2, xl):
    """BYOL with local views: the two global views as in BYOL (symmetric), plus every local view's prediction
    regressing both global views' target projections; the mean of the terms' means, on BYOL's [0, 8] scale."""
    b = x1.shape[0]
    pred_g = model.predictor(model.online_projector(model.online_encoder(torch.cat([x1, x2], 0))))
    pred_l = model.predictor(model.online_projector(model.online_encoder(xl)))
    with torch.no_grad():
        t = model.target_projector(model.target_encoder(torch.cat([x1, x2], 0)))
    terms = [byol_loss(pred_g[:b], t[b:]), byol_loss(pred_g[b:], t[:b])]
    for v in range(0, len(xl), b):
        terms += [byol_loss(pred_l[v : v + b], t[:b]), byol_loss(pred_l[v : v + b], t[b:])]
    return torch.stack([x.mean() for x in terms]).mean() * 2


def texture_graph(k):
    """(N, k) indices: each training image's k nearest other-group training images, twin texture descriptor."""
    from quality_cluster import neighbours, source_coords

    from training.readout import descriptors

    enc_ = model.online_encoder.eval()
    with torch.inference_mode():
        desc = torch.cat([descriptors(enc_, normalize_batch(uint8_to_float(train_x[i : i + 100])), None)
                          for i in range(0, len(train_x), 100)]).numpy()  # fmt: skip
    model.train()
    nbr = neighbours(source_coords(desc), groups[A], k)  # the same mining as quality_cluster.py's
    la = labels[A]
    print("neighbour graph: label purity (diagnostic only)", round(float((la[nbr] == la[:, None]).mean()), 3), flush=True)
    return torch.from_numpy(nbr)


if a.untrained:
    evaluate("untrained")
    sys.exit()
graph = texture_graph(a.nn_graph) if a.nn_graph else None
g = torch.Generator().manual_seed(a.seed)
budget = float("inf") if a.steps else a.minutes * 60
# estimate steps: time 3 steps
n = len(train_x)
step = 0
t0 = time.time()
seen = 0
total_steps = a.steps or None
next_eval = budget / a.evals
train_time = 0.0
while True:
    perm = torch.randperm(n, generator=g)
    for s in range(0, n - a.batch + 1, a.batch):
        ts = time.time()
        x = train_x[perm[s : s + a.batch]]
        if graph is not None:
            pick = graph[perm[s : s + a.batch], torch.randint(0, a.nn_graph, (a.batch,), generator=g)]
            x1, x2 = v1(x, g), v2(train_x[pick], g)
        else:
            x1, x2 = v1(x, g), v2(x, g)
        if total_steps is None and step == 3:
            per = train_time / 3
            total_steps = int(budget / per)
            print("steps", total_steps, "per", round(per, 3), flush=True)
        T = total_steps or 10**6
        lr = lr_at(step, T, a.lr, "cosine", int(a.warmup * T) if total_steps else 10**9 if a.warmup > 0 else 0)
        if total_steps is None and a.warmup > 0:
            lr = a.lr * 0.01
        for gr in opt.param_groups:
            gr["lr"] = lr
        if a.nn > 1:
            loss = msf_loss(x1, x2)
        elif a.local:
            loss = multicrop_loss(x1, x2, torch.cat([vl(x, g) for _ in range(a.local)], 0))
        else:
            if a.channels_last:
                x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp):
                loss, _, _ = model(x1, x2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = cosine_ema_rate(step, T, a.ema) if a.ema_sched == "cosine" else a.ema
        model.update_target(ema)
        step += 1
        seen += a.batch
        train_time += time.time() - ts
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} t {train_time:.0f}", flush=True)
        at_eval = step % max(a.steps // a.evals, 1) == 0 if a.steps else train_time >= next_eval - 1e-9
        if at_eval or (total_steps and step >= total_steps):
            evaluate(f"t={train_time:.0f}s step={step} img/s={seen / train_time:.1f}")
            next_eval += budget / a.evals
        if total_steps and step >= total_steps:
            sys.exit()
