"""The ``texture`` read-out: second-order statistics of the encoder's early stages, projected onto the directions
that separate the tissue types of the training images, found without labels.

Measured on LC25000 (BENCHMARKS.md, *Quality, 2026-12-02 evening*): a pathologist tells adenocarcinoma from
squamous-cell carcinoma by texture (glands and lumens against solid nests), and the pooled deep feature (the mean of
the last stage's map) mixes that signal with stain and brightness, so a cosine threshold cannot use it. The
covariance of the stem's and the first stage's channels keeps it: a supervised linear probe on it reads the class
of held-out tiles 93 % right. What is left is to find those directions without labels:

1. **Descriptor** (per image, no fitting): for the stem output (``relu(bn1(conv1(x)))``) and the first stage
   (``layer1``; projected to :data:`MAX_CHANNELS` channels by a fixed random orthonormal matrix when wider), the
   per-image channel covariance ``(F - mean)(F - mean)^T / HW``; its upper triangle, signed square root, each part
   L2-normalised, concatenated.
2. **Fitted on unlabeled training images** (when training ends, like feature centring): the mean, the top
   ``texture_components`` principal axes, k-means with ``texture_clusters`` clusters on those coordinates, and a
   shrinkage LDA that separates the clusters (``texture_clusters - 1`` axes). No label is ever used.
3. **Vector stored**: the LDA coordinates and the principal coordinates, each L2-normalised, side by side, so that a
   pair query uses the discriminant axes and a top-k query keeps the finer neighbourhoods of the principal ones.

Everything at query time is torch (``TextureHead``), so it runs on the GPU with the backbone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.errors import CheckpointError, DataError

#: Channels of a stage's map before its covariance (wider stages are projected): 64 -> 2,080 numbers per stage.
MAX_CHANNELS = 64
#: Images per forward pass while fitting or embedding on the CPU (the stem's map is 64 x 112 x 112 floats at 224 px).
CHUNK = 64
#: Keys of the fitted state stored in the checkpoint under ``"texture_readout"``.
STATE_KEYS = ("stage1_projection", "mean", "components", "lda_axes")
#: Fewest training images the read-out can be fitted on.
MIN_FIT_IMAGES = 3


def require_fit_images(count: int, source: object) -> None:
    """Raise :class:`DataError` naming ``source`` when ``count`` images are too few to fit the read-out."""
    if count < MIN_FIT_IMAGES:
        raise DataError(
            f"{source}: {count} image(s), but the texture representation is fitted on at least {MIN_FIT_IMAGES} "
            "training images: add images, or train with --representation backbone"
        )


def channel_products(maps: torch.Tensor, projection: torch.Tensor | None = None, centre: bool = True) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C'(C'+1)/2)``: the upper triangle of each image's ``F F^T / HW`` over its channels
    (``C' = C``, or the rows of ``projection`` applied to the channels first); ``centre``: of the per-image centred
    map, i.e. the channel covariance (the read-out's), else the Gram matrix."""
    with torch.autocast(maps.device.type, enabled=False):  # float32 even under the Encoder's bf16 autocast
        f = maps.float().flatten(2)
        if projection is not None:
            f = torch.einsum("dc,bcn->bdn", projection.to(f), f)
        if centre:
            f = f - f.mean(2, keepdim=True)
        products = f @ f.transpose(1, 2) / f.shape[2]
    iu = torch.triu_indices(products.shape[1], products.shape[1], device=products.device)
    return products[:, iu[0], iu[1]]


def _upper_covariance(maps: torch.Tensor, projection: torch.Tensor | None) -> torch.Tensor:
    """Signed square root of :func:`channel_products` (covariance), L2-normalised."""
    upper = channel_products(maps, projection)
    return F.normalize(upper.sign() * upper.abs().sqrt(), dim=1)


def stage1_projection(trunk: nn.Module, seed: int = 0) -> torch.Tensor | None:
    """Fixed random orthonormal ``(MAX_CHANNELS, C)`` projection of the first stage's ``C`` channels (``None``
    when ``C <= MAX_CHANNELS``, as for resnet18)."""
    channels = _stage1_channels(trunk)
    if channels <= MAX_CHANNELS:
        return None
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(channels, MAX_CHANNELS, generator=g))
    return q.T.contiguous()


def _stage1_channels(trunk: nn.Module) -> int:
    last = list(trunk.layer1.children())[-1]  # type: ignore[union-attr]
    for name in ("bn3", "bn2"):
        if hasattr(last, name):
            return int(getattr(last, name).num_features)
    raise CheckpointError("the texture read-out needs a torchvision ResNet / ResNeXt trunk")


def descriptors(trunk: nn.Module, x: torch.Tensor, projection: torch.Tensor | None) -> torch.Tensor:
    """Texture descriptors of a normalised float batch ``(B, 3, S, S)``: ``(B, D)`` float32 (step 1 above)."""
    stem = trunk.relu(trunk.bn1(trunk.conv1(x)))  # type: ignore[operator]
    stage1 = trunk.layer1(trunk.maxpool(stem))  # type: ignore[operator]
    return torch.cat([_upper_covariance(stem, None), _upper_covariance(stage1, projection)], dim=1)


def fit(desc: np.ndarray, components: int, clusters: int, seed: int) -> dict[str, np.ndarray]:
    """Fit step 2 on ``(N, D)`` descriptors of unlabeled training images.

    With fewer than ``clusters + 1`` images the clusters shrink to ``N - 1``.

    Raises:
        DataError: fewer than 3 images (nothing to fit).
    """
    from sklearn.cluster import KMeans
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = np.asarray(desc, dtype=np.float64)
    require_fit_images(len(x), "the images decoded to fit the texture read-out")
    clusters = min(clusters, len(x) - 1)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(components, vt.shape[0])
    axes = vt[:k]
    coords = (x - mean) @ axes.T
    unit = coords / (np.linalg.norm(coords, axis=1, keepdims=True) + 1e-12)
    assign = KMeans(clusters, n_init=4, random_state=seed).fit_predict(unit)
    if len(set(assign.tolist())) < 2:  # identical images: nothing to separate, keep the principal axes only
        return {"mean": mean, "components": axes, "lda_axes": np.zeros((k, 0))}
    with warnings.catch_warnings():  # a cluster of one image (small folders) is fine with shrinkage
        warnings.simplefilter("ignore", UserWarning)
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.5).fit(coords, assign)
    n_axes = min(len(set(assign.tolist())) - 1, k)
    # the principal coordinates of the fit set have mean 0, so their LDA coordinates are ``coords @ axes`` (as
    # scikit-learn's eigen solver computes them)
    return {"mean": mean, "components": axes, "lda_axes": lda.scalings_[:, :n_axes]}


def fit_state(trunk: nn.Module, images: np.ndarray, components: int, clusters: int, seed: int,
              device: torch.device, normalise: Callable[[torch.Tensor], torch.Tensor]
              ) -> dict[str, torch.Tensor]:  # fmt: skip
    """Descriptors of ``(N, 3, S, S)`` uint8 training images, then :func:`fit`: the state :class:`TextureHead`
    and the checkpoint hold (float32, CPU). ``normalise`` maps a uint8 batch on ``device`` to model input."""
    projection = stage1_projection(trunk, seed)
    was_training = trunk.training
    trunk.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), CHUNK):
            x = normalise(torch.from_numpy(images[start : start + CHUNK]).to(device))
            chunks.append(descriptors(trunk, x, None if projection is None else projection.to(device)).cpu())
    trunk.train(was_training)
    fitted = fit(torch.cat(chunks).numpy(), components, clusters, seed)
    state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in fitted.items()}
    state["stage1_projection"] = projection if projection is not None else torch.zeros(0)
    return state


class TextureHead(nn.Module):
    """Backbone trunk -> texture vector ``[unit(LDA coords), unit(principal coords)] / sqrt(2)`` (step 3)."""

    projection: torch.Tensor | None
    mean: torch.Tensor
    components: torch.Tensor
    lda_axes: torch.Tensor

    def __init__(self, trunk: nn.Module, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"the texture read-out state lacks {', '.join(missing)}: re-train or re-fit it")
        self.trunk = trunk
        proj = state["stage1_projection"].float()
        self.register_buffer("projection", proj if proj.numel() else None)
        for key in ("mean", "components", "lda_axes"):
            self.register_buffer(key, state[key].float())
        self.dim = int(self.components.shape[0]) + int(self.lda_axes.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(descriptors(self.trunk, x, self.projection))

    def project(self, desc: torch.Tensor) -> torch.Tensor:
        """Descriptors ``(B, D)`` -> vectors ``(B, dim)``: LDA coordinates first, then the principal ones."""
        with torch.autocast(desc.device.type, enabled=False):
            coords = (desc.float() - self.mean) @ self.components.T
            pc = F.normalize(coords, dim=1)
            if self.lda_axes.shape[1] == 0:
                return pc
            lda = F.normalize(coords @ self.lda_axes, dim=1)
            return torch.cat([lda, pc], dim=1) / 2**0.5
