"""Enumerate what to ingest: folders (recursive), single files, a manifest CSV, labelled class folders.

Enumeration only looks at names and file sizes (plus a header peek for very large files and TIFFs), never at
pixels: it runs in the submitting process and must stay fast for large folders. Per-file problems found here
(a path that does not exist, an unreadable folder, a bad manifest row) become :class:`EnumFailure` entries that the
job records; a manifest without a ``path`` column raises :class:`~ingest.errors.ManifestError`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.decode import IMAGE_EXTENSIONS
from ingest.errors import ManifestError
from retrieval.groups import manifest_group

logger = logging.getLogger(__name__)

#: Extensions only whole-slide readers open (always tiled).
SLIDE_EXTENSIONS = frozenset(
    {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm", ".czi", ".qptiff"}
)
#: Plain images larger than this many pixels are tiled like a slide (fallback reader) instead of embedded whole.
SLIDE_MIN_PIXELS = 4096 * 4096
#: Files smaller than this are never large enough to be a slide: no header peek needed.
_PEEK_MIN_BYTES = 4 * 1024 * 1024

MANIFEST_KNOWN = ("path", "label", "slide", "dataset", "group")

Kind = Literal["image", "slide"]


@dataclass(frozen=True)
class SourceItem:
    """One input file.

    Attributes:
        path: absolute path (not resolved through symlinks; may not exist: the worker reports that).
        kind: 'image' (embedded whole) or 'slide' (tiled).
        label: class label (manifest column or class folder), or None.
        dataset: per-item dataset name from a manifest (overrides the job's dataset), or None.
        slide: slide name from a manifest (metadata for patches cut from a slide), or None.
        group: group from a manifest's group / patient / case / slide column (``retrieval.groups``), or None.
        extra: any further manifest columns, kept as metadata.
    """

    path: str
    kind: Kind = "image"
    label: str | None = None
    dataset: str | None = None
    slide: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    group: str | None = None


@dataclass(frozen=True)
class EnumFailure:
    """A problem found while enumerating (recorded as an ``IngestFailure`` of the job)."""

    source: str
    stage: str
    reason: str


@dataclass
class Enumeration:
    """The result of :func:`enumerate_sources`."""

    items: list[SourceItem] = field(default_factory=list)
    failures: list[EnumFailure] = field(default_factory=list)


def classify(path: str | Path, *, peek: bool = False) -> Kind:
    """Decide whether a file is a whole slide (tiled) or an image (embedded whole), from its name and header.

    Slide-only extensions are slides; TIFFs that OpenSlide recognises (tiled / pyramidal) and plain images over
    :data:`SLIDE_MIN_PIXELS` are slides too; everything else is an image. Inside folders only files of at least
    4 MiB get their header read (fast enumeration); ``peek=True`` (files named explicitly) always reads it.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext in SLIDE_EXTENSIONS:
        return "slide"
    if ext not in IMAGE_EXTENSIONS:
        return "image"
    try:
        size = p.stat().st_size
    except OSError:
        return "image"  # the worker reports the read error for this file
    if ext in (".tif", ".tiff"):
        import openslide

        if openslide.OpenSlide.detect_format(str(p)) is not None:
            return "slide" if size >= _PEEK_MIN_BYTES or _pixels(p) >= SLIDE_MIN_PIXELS else "image"
    if (peek or size >= _PEEK_MIN_BYTES) and _pixels(p) >= SLIDE_MIN_PIXELS:
        return "slide"
    return "image"


def _pixels(path: Path) -> int:
    """Pixel count from the header only (0 when the header cannot be read: the worker reports it)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return int(image.width) * int(image.height)
    except Image.DecompressionBombError:
        return 2**62
    except Exception:  # noqa: BLE001 - any unreadable header: classify as image, the decoder names the reason
        return 0


def _is_candidate(name: str) -> bool:
    if name.startswith("."):
        return False
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in SLIDE_EXTENSIONS


def walk_folder(root: Path, failures: list[EnumFailure]) -> Iterator[Path]:
    """Yield image / slide files under ``root`` recursively, in sorted order; unreadable folders are recorded."""

    def onerror(exc: OSError) -> None:
        failures.append(EnumFailure(str(exc.filename or root), "read", f"cannot list folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if _is_candidate(name):
                yield Path(dirpath) / name


def read_manifest(path: str | Path) -> Enumeration:
    """Parse a manifest CSV: ``path`` (required), ``label``, ``slide``, ``dataset``, ``group``, any extra columns.

    The item's group is the first non-empty of ``group``, ``patient``, ``case``, ``slide``.

    Relative paths are relative to the manifest's folder. Extra columns are kept per item as metadata.

    Raises:
        ManifestError: the file cannot be read, is empty, has no ``path`` column or duplicate column names.

    Returns:
        The items, plus one failure per bad row (wrong field count, empty path) naming the row number.
    """
    manifest = Path(path)
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ManifestError(f"{manifest}: manifest not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{manifest}: cannot read manifest as UTF-8 CSV: {exc}") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ManifestError(f"{manifest}: empty manifest: the first line must be a header with at least 'path'")
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header:
        raise ManifestError(
            f"{manifest}: missing required column 'path' (found columns: {', '.join(header)}); "
            "expected a header like 'path,label,slide,dataset'"
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ManifestError(f"{manifest}: duplicate column names: {', '.join(dupes)}")
    out = Enumeration()
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{manifest}:{lineno}"
        if len(row) != len(header):
            out.failures.append(
                EnumFailure(where, "read", f"manifest row {lineno}: expected {len(header)} fields, got {len(row)}")
            )
            continue
        values = {h: v.strip() for h, v in zip(header, row, strict=True)}
        if not values["path"]:
            out.failures.append(EnumFailure(where, "read", f"manifest row {lineno}: empty 'path'"))
            continue
        file_path = Path(values["path"]).expanduser()
        if not file_path.is_absolute():
            file_path = manifest.parent / file_path
        extra = {k: v for k, v in values.items() if k not in MANIFEST_KNOWN and v != ""}
        out.items.append(
            SourceItem(
                path=str(file_path.absolute()),
                kind=classify(file_path),
                label=values.get("label") or None,
                dataset=values.get("dataset") or None,
                slide=values.get("slide") or None,
                extra=extra,
                group=manifest_group(values),
            )
        )
    return out


def enumerate_sources(
    paths: Sequence[str | Path], *, labels_from_folders: bool = False, manifest: str | Path | None = None
) -> Enumeration:
    """Enumerate files from folders / files and an optional manifest.

    Args:
        paths: folders (walked recursively) and single files.
        labels_from_folders: label each image with the name of the folder it sits in (class folders).
        manifest: a manifest CSV (see :func:`read_manifest`).

    Returns:
        Items in a deterministic order (duplicates of the same path removed) and enumeration failures.
    """
    out = Enumeration()
    seen: set[str] = set()

    def add(item: SourceItem) -> None:
        if item.path not in seen:
            seen.add(item.path)
            out.items.append(item)

    for raw in paths:
        p = Path(raw).expanduser().absolute()
        if p.is_dir():
            found = 0
            for f in walk_folder(p, out.failures):
                found += 1
                add(SourceItem(str(f), classify(f), f.parent.name if labels_from_folders else None))
            if found == 0:
                logger.warning(
                    "%s: no image or slide files found (extensions: %s)", p, ", ".join(sorted(IMAGE_EXTENSIONS))
                )
        elif p.exists() or p.is_symlink():
            add(SourceItem(str(p), classify(p, peek=True), p.parent.name if labels_from_folders else None))
        else:
            out.failures.append(EnumFailure(str(p), "read", "path does not exist (check the path)"))
    if manifest is not None:
        parsed = read_manifest(manifest)
        for item in parsed.items:
            add(item)
        out.failures.extend(parsed.failures)
    return out
