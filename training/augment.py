"""BYOL view augmentations as batched tensor ops (GPU or CPU), every knob a typed keyword.

Images arrive as a ``uint8`` batch ``(B, 3, L, L)`` decoded and resized by CPU workers; a :class:`ViewTransform`
turns it into a normalised float batch ``(B, 3, S, S)`` on the batch's device. Every random parameter is drawn per
sample on the CPU from the given ``torch.Generator``, so a seed reproduces the views on any device.

Steps, in order (each one off when its probability is 0): random resized crop + horizontal / vertical flip + 90°
rotation (one ``grid_sample`` call), H&E stain jitter, colour jitter (brightness, contrast, saturation, hue, in a
random order per sample), grayscale, Gaussian blur (separable, per-sample sigma), solarization, normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.preprocess import normalize_batch, uint8_to_float

# RGB <-> YIQ (hue rotation is a rotation of the IQ plane) and RGB <-> HED optical density (Ruifrok & Johnston).
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_GRAY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ViewTransform:
    """One BYOL view. Defaults are BYOL's view 1 (blur always, no solarization); see :func:`byol_views`.

    Args:
        output_size: side ``S`` of the output views.
        crop_scale: area fraction range of the random resized crop.
        crop_ratio: aspect-ratio range of the crop.
        hflip_prob, vflip_prob: probabilities of a horizontal / vertical flip.
        rot90_prob: probability of a rotation by a random multiple of 90° (histology extra).
        stain_jitter_prob: probability of H&E stain jitter (histology extra).
        stain_jitter_sigma: HED concentration scale ~ U(1-σ, 1+σ) and shift ~ U(-σ, σ).
        jitter_prob: probability of colour jitter.
        brightness, contrast, saturation: jitter strengths, factor ~ U(1-x, 1+x).
        hue: hue shift ~ U(-hue, hue) turns (a rotation in YIQ space).
        grayscale_prob: probability of converting to grayscale.
        blur_prob: probability of Gaussian blur.
        blur_sigma: sigma range in pixels of the output.
        blur_kernel_frac: kernel size as a fraction of ``output_size`` (BYOL: 23 px at 224), made odd.
        solarize_prob: probability of solarization.
        solarize_threshold: pixels at or above it (in ``[0, 1]``) are inverted.
        normalize: apply ImageNet normalisation at the end.
    """

    output_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_prob: float = 0.5
    vflip_prob: float = 0.0
    rot90_prob: float = 0.0
    stain_jitter_prob: float = 0.0
    stain_jitter_sigma: float = 0.05
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5
    normalize: bool = True

    @property
    def blur_kernel_size(self) -> int:
        """Odd kernel size derived from ``blur_kernel_frac`` (23 at 224 px)."""
        k = max(3, int(round(self.blur_kernel_frac * self.output_size)))
        return k if k % 2 == 1 else k + 1

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch.

        Args:
            images: ``(B, 3, H, W)`` uint8 (or float in ``[0, 1]``) on any device.
            generator: CPU generator for the random parameters (reproducible views); ``None`` = global RNG.

        Returns:
            ``(B, 3, S, S)`` float32 on the input's device (normalised when ``normalize``).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
        b = images.shape[0]
        dev = images.device
        x = self._crop_flip_rotate(uint8_to_float(images), generator)
        if self.stain_jitter_prob > 0:
            x = self._stain_jitter(x, _mask(b, self.stain_jitter_prob, generator), generator)
        if self.jitter_prob > 0:
            x = self._colour_jitter(x, _mask(b, self.jitter_prob, generator), generator)
        if self.grayscale_prob > 0:
            gray = _grayscale(x).expand_as(x)
            x = torch.where(_mask(b, self.grayscale_prob, generator).to(dev).view(b, 1, 1, 1), gray, x)
        if self.blur_prob > 0:
            x = self._blur(x, _mask(b, self.blur_prob, generator), generator)
        if self.solarize_prob > 0:
            sel = _mask(b, self.solarize_prob, generator).to(dev).view(b, 1, 1, 1)
            x = torch.where(sel & (x >= self.solarize_threshold), 1.0 - x, x)
        return normalize_batch(x) if self.normalize else x

    # geometry

    def _crop_flip_rotate(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        cw, ch = _sample_crops(b, h, w, self.crop_scale, self.crop_ratio, g)  # fractions of width / height
        cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - cw)  # centre in [-1, 1] keeping the crop inside
        cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - ch)
        fx = torch.where(_mask(b, self.hflip_prob, g), -1.0, 1.0)
        fy = torch.where(_mask(b, self.vflip_prob, g), -1.0, 1.0)
        k = torch.randint(0, 4, (b,), generator=g) * _mask(b, self.rot90_prob, g).long()
        angle = k.float() * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
        # input = diag(cw, ch) @ diag(fx, fy) @ R(angle) @ output + centre
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cw * fx * cos, -cw * fx * sin, cx
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = ch * fy * sin, ch * fy * cos, cy
        s = self.output_size
        grid = F.affine_grid(theta.to(x.device), [b, 3, s, s], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # colour

    def _stain_jitter(self, x: torch.Tensor, sel: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        b, sig = x.shape[0], self.stain_jitter_sigma
        alpha = torch.where(sel.view(b, 1), 1 + (torch.rand(b, 3, generator=g) * 2 - 1) * sig, torch.ones(b, 3))
        beta = torch.where(sel.view(b, 1), (torch.rand(b, 3, generator=g) * 2 - 1) * sig, torch.zeros(b, 3))
        dev = x.device
        log_adjust = math.log(1e-6)
        od = torch.log(x.clamp_min(1e-6)) / log_adjust  # (B,3,H,W), 0 = white
        hed = torch.matmul(_HED_FROM_RGB.t().to(dev), od.reshape(b, 3, -1)).view_as(od)
        hed = hed * alpha.to(dev).view(b, 3, 1, 1) + beta.to(dev).view(b, 3, 1, 1)
        od2 = torch.matmul(_RGB_FROM_HED.t().to(dev), hed.reshape(b, 3, -1)).view_as(hed)
        out = torch.exp(od2 * log_adjust).clamp(0, 1)
        return torch.where(sel.to(dev).view(b, 1, 1, 1), out, x)

    def _colour_jitter(self, x: torch.Tensor, sel: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        factors, order = self.jitter_params(sel, g)
        strengths = (self.brightness, self.contrast, self.saturation, self.hue)
        return apply_colour_jitter(x, factors, order, ops=tuple(i for i, v in enumerate(strengths) if v > 0))

    def jitter_params(self, sel: torch.Tensor, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample colour-jitter parameters.

        Args:
            sel: ``(B,)`` bool, the samples that are jittered (the others get neutral factors).
            g: CPU generator.

        Returns:
            ``(factors, order)``: ``(B, 4)`` float brightness / contrast / saturation factors (``>= 0``, centre 1)
            and hue shift in turns (centre 0, may be negative), and ``(B, 4)`` long, each row a permutation of the
            four ops drawn for that sample (torchvision draws one order per image).
        """
        b = sel.shape[0]
        strength = torch.tensor([self.brightness, self.contrast, self.saturation, self.hue])
        centre = torch.tensor([1.0, 1.0, 1.0, 0.0])
        f = centre + (torch.rand(b, 4, generator=g) * 2 - 1) * strength
        f[:, :3] = f[:, :3].clamp_min(0)  # multiplicative factors only: the hue shift keeps its sign
        factors = torch.where(sel.view(b, 1), f, centre.expand(b, 4))
        order = torch.rand(b, 4, generator=g).argsort(dim=1)
        return factors, order

    def _blur(self, x: torch.Tensor, sel: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        b = x.shape[0]
        sigma = self.blur_sigma[0] + torch.rand(b, generator=g) * (self.blur_sigma[1] - self.blur_sigma[0])
        idx = sel.nonzero().flatten()
        if idx.numel() == 0:
            return x
        out = x.clone()
        out[idx.to(x.device)] = gaussian_blur(x[idx.to(x.device)], sigma[idx], self.blur_kernel_size)
        return out


def apply_colour_jitter(
    x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, ops: tuple[int, ...] = (0, 1, 2, 3)
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, each sample in its own order.

    Args:
        x: ``(B, 3, H, W)`` floats in ``[0, 1]``.
        factors: ``(B, 4)`` brightness, contrast, saturation factors and hue shift in turns (CPU or same device).
        order: ``(B, 4)`` per-sample permutation of the op indices 0..3 (same order as ``factors``' columns).
        ops: the ops to apply at all (those of zero strength are skipped: they are the identity).

    Returns:
        ``(B, 3, H, W)`` jittered images, clamped to ``[0, 1]``.
    """
    dev = x.device
    f = factors.to(dev)
    for position in range(4):
        chosen = order[:, position]
        for op in ops:
            idx = (chosen == op).nonzero().flatten().to(dev)
            if idx.numel() == 0:
                continue
            x = x.index_copy(0, idx, _jitter_op(x.index_select(0, idx), op, f.index_select(0, idx)[:, op]))
    return x


def _jitter_op(x: torch.Tensor, op: int, value: torch.Tensor) -> torch.Tensor:
    """One colour op on ``(n, 3, H, W)`` with ``(n,)`` per-sample values (see :func:`apply_colour_jitter`)."""
    v = value.view(-1, 1, 1, 1)
    if op == 0:
        return (x * v).clamp(0, 1)
    if op == 1:
        mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        return (mean + (x - mean) * v).clamp(0, 1)
    if op == 2:
        gray = _grayscale(x)
        return (gray + (x - gray) * v).clamp(0, 1)
    return _rotate_hue(x, value * 2 * math.pi)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (reflect padding).

    Args:
        x: ``(N, C, H, W)`` float images.
        sigma: ``(N,)`` standard deviations in pixels (CPU or same device).
        kernel_size: odd kernel size.

    Returns:
        ``(N, C, H, W)`` blurred images.
    """
    n, c, h, w = x.shape
    half = kernel_size // 2
    pos = torch.arange(kernel_size, dtype=torch.float32) - half
    k1d = torch.exp(-(pos.view(1, -1) ** 2) / (2 * sigma.float().cpu().view(-1, 1) ** 2))
    k1d = (k1d / k1d.sum(dim=1, keepdim=True)).to(device=x.device, dtype=x.dtype)  # (N, K)
    weight = k1d.repeat_interleave(c, dim=0)  # (N*C, K)
    y = x.reshape(1, n * c, h, w)
    pad = min(half, h - 1, w - 1)
    if pad < half:  # tiny images: crop the kernel to what reflection padding allows
        weight = weight[:, half - pad : half + pad + 1]
        weight = weight / weight.sum(dim=1, keepdim=True)
    y = F.pad(y, (pad, pad, 0, 0), mode="reflect")
    y = F.conv2d(y, weight.view(n * c, 1, 1, -1), groups=n * c)
    y = F.pad(y, (0, 0, pad, pad), mode="reflect")
    y = F.conv2d(y, weight.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def _mask(b: int, prob: float, g: torch.Generator | None) -> torch.Tensor:
    """``(B,)`` bool, each True with probability ``prob`` (drawn even when prob is 0 or 1, to keep streams aligned)."""
    return torch.rand(b, generator=g) < prob


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    r, gch, bch = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _GRAY[0] * r + _GRAY[1] * gch + _GRAY[2] * bch


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``angle`` radians per sample: RGB -> YIQ, rotate (I, Q), back; clamp to ``[0, 1]``."""
    b, dev = x.shape[0], x.device
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(b, 3, 3, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = _YIQ2RGB.to(dev) @ rot @ _RGB2YIQ.to(dev)  # (B, 3, 3)
    return torch.bmm(m, x.reshape(b, 3, -1)).view_as(x).clamp(0, 1)


def _sample_crops(
    b: int, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], g: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torchvision's RandomResizedCrop sampling, vectorised: 10 tries per sample, fallback to the full image.

    Returns:
        ``(crop_w / w, crop_h / h)`` as two ``(B,)`` tensors in ``(0, 1]``.
    """
    tries = 10
    area = torch.empty(b, tries).uniform_(scale[0], scale[1], generator=g) * (h * w)
    log_r = torch.empty(b, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
    r = torch.exp(log_r)
    cw, ch = torch.sqrt(area * r), torch.sqrt(area / r)
    ok = (cw <= w) & (ch <= h)
    first = torch.where(ok.any(dim=1), ok.float().argmax(dim=1), torch.full((b,), -1))
    rows = torch.arange(b)
    sel_w = torch.where(first >= 0, cw[rows, first.clamp_min(0)], torch.full((b,), float(w)))
    sel_h = torch.where(first >= 0, ch[rows, first.clamp_min(0)], torch.full((b,), float(h)))
    return sel_w / w, sel_h / h


def byol_views(output_size: int = 224, **common: object) -> tuple[ViewTransform, ViewTransform]:
    """BYOL's asymmetric pair: view 1 blur p=1.0 / solarize p=0.0, view 2 blur p=0.1 / solarize p=0.2.

    Args:
        output_size: view side length.
        **common: any other :class:`ViewTransform` keyword, applied to both views.
    """
    v1 = ViewTransform(output_size=output_size, blur_prob=1.0, solarize_prob=0.0, **common)  # type: ignore[arg-type]
    v2 = ViewTransform(output_size=output_size, blur_prob=0.1, solarize_prob=0.2, **common)  # type: ignore[arg-type]
    return v1, v2
