"""Factories for ingest test inputs: every kind of bad file, odd image modes, labelled folders.

Images are made from real H&E pixels (a crop of the shipped sample) so they also embed meaningfully.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGE = ROOT / "samples" / "kather2016" / "01_TUMOR" / "hfpng_0_tumor_example.png"


def he_image(size: int = 96, seed: int = 0) -> Image.Image:
    """A real H&E crop (RGB) of ``size`` px, shifted by ``seed`` so different seeds give different pixels."""
    base = Image.open(SAMPLE_IMAGE).convert("RGB")
    off = seed % max(1, base.width - size)
    crop = base.crop((off, 0, off + min(size, base.width), min(size, base.height)))
    return crop.resize((size, size))


def write_png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature + IHDR claiming ``width`` x ``height`` and a tiny IDAT (a decompression bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    """Write one file per permanent-failure kind into ``folder``; returns kind -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["zero_byte"] = folder / "zero.png"
    out["zero_byte"].write_bytes(b"")
    buf = io.BytesIO()
    he_image(128, 1).save(buf, format="JPEG", quality=90)
    out["truncated_jpeg"] = folder / "truncated.jpg"
    out["truncated_jpeg"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    he_image(128, 2).save(buf, format="PNG")
    out["truncated_png"] = folder / "truncated.png"
    out["truncated_png"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    out["text_as_png"] = folder / "notes.png"
    out["text_as_png"].write_text("this is not an image\n")
    out["bomb"] = write_png_header_only(folder / "bomb.png", 100_000, 100_000)
    out["one_pixel"] = folder / "one.png"
    Image.new("RGB", (1, 1), (200, 100, 150)).save(out["one_pixel"])
    return out


def make_odd_mode_images(folder: Path) -> dict[str, Path]:
    """Valid images in unusual modes (all must be accepted): 16-bit, CMYK, palette, RGBA, LA, EXIF-rotated."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = he_image(96, 3)
    out: dict[str, Path] = {}
    grey16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    out["gray16"] = folder / "gray16.png"
    Image.fromarray(grey16).save(out["gray16"])
    out["cmyk"] = folder / "cmyk.jpg"
    he_image(96, 4).convert("CMYK").save(out["cmyk"], quality=95)
    out["palette"] = folder / "palette.png"
    he_image(96, 5).convert("P", palette=Image.Palette.ADAPTIVE).save(out["palette"])
    rgba = he_image(96, 6).convert("RGBA")
    rgba.putalpha(200)
    out["rgba"] = folder / "rgba.png"
    rgba.save(out["rgba"])
    out["la"] = folder / "la.png"
    he_image(96, 7).convert("LA").save(out["la"])
    rotated = he_image(96, 8).resize((96, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out["exif_rotated"] = folder / "rotated.jpg"
    rotated.save(out["exif_rotated"], exif=exif.tobytes(), quality=95)
    out["tiff"] = folder / "plain.tif"
    he_image(96, 9).save(out["tiff"])
    out["bmp"] = folder / "plain.bmp"
    he_image(96, 10).save(out["bmp"])
    return out


def make_unreadable(path: Path) -> Path | None:
    """A file the current user cannot read (None when running as root, where permissions do not apply)."""
    if os.geteuid() == 0:
        return None
    he_image(64, 11).save(path)
    path.chmod(0)
    return path


def write_bilevel_png(path: Path, side: int) -> Path:
    """A white 1-bit PNG of ``side`` x ``side`` written row by row (13000 px: about 20 KB on disk, 169 M pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff" * ((side + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def write_sparse_fake_image(path: Path, size: int, tag: bytes = b"") -> Path:
    """A ``size``-byte file of zeros after ``tag`` (sparse: no disk used) with an image name: not an image at all."""
    with path.open("wb") as fh:
        fh.write(tag)
        fh.truncate(size)
    return path
