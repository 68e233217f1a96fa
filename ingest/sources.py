"""Enumerate what to ingest: folders (recursive), single files, a manifest CSV, labelled class folders.

Enumeration only looks at names and image headers (a bounded read of each file), never at pixels: it runs in the
submitting process and must stay fast for large folders. Every stored path is in its one canonical form
(:func:`retrieval.paths.normalise_path`). With allowed roots (:class:`~ingest.paths.Roots`), every folder entry
(symlinks included) and manifest row is checked before anything is opened; a refused file gets
:data:`~ingest.paths.REFUSED`. A file name that is not valid UTF-8 is refused by itself (the rest goes on).
Per-file problems found here (a path that does not exist, an unreadable folder, a bad manifest row) become
:class:`EnumFailure` entries that the job records; a manifest without a ``path`` column raises
:class:`~ingest.errors.ManifestError`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.errors import ManifestError
from ingest.paths import REFUSED, Roots, display_path
from retrieval.errors import RetrievalError
from retrieval.groups import manifest_group
from retrieval.names import check_label
from retrieval.paths import PathError, normalise_path
from training.pixels import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

#: Extensions only whole-slide readers open (always tiled).
SLIDE_EXTENSIONS = frozenset(
    {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm", ".czi", ".qptiff"}
)
#: Plain images larger than this many pixels are tiled like a slide (fallback reader) instead of embedded whole.
SLIDE_MIN_PIXELS = 4096 * 4096
#: TIFFs at least this large that OpenSlide recognises are slides without looking at their pixel count.
_PEEK_MIN_BYTES = 4 * 1024 * 1024

MANIFEST_KNOWN = ("path", "label", "slide", "dataset", "group")

Kind = Literal["image", "slide"]


@dataclass(frozen=True)
class SourceItem:
    """One input file.

    Attributes:
        path: canonical path (:func:`retrieval.paths.normalise_path`; may not exist: the worker reports that).
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
    :data:`SLIDE_MIN_PIXELS` are slides too; everything else is an image. Every file's header is read (a bounded
    read): a small file can hold a huge image (a 20 KB 1-bit PNG of 13000 x 13000), which must be tiled, not decoded
    whole. ``peek`` is kept for callers; the header is always read.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext in SLIDE_EXTENSIONS:
        return "slide"
    if ext not in IMAGE_SUFFIXES:
        return "image"
    try:
        size = p.stat().st_size
    except OSError:
        return "image"  # the worker reports the read error for this file
    if ext in (".tif", ".tiff"):
        import openslide

        if openslide.OpenSlide.detect_format(str(p)) is not None:
            return "slide" if size >= _PEEK_MIN_BYTES or _pixels(p) >= SLIDE_MIN_PIXELS else "image"
    if _pixels(p) >= SLIDE_MIN_PIXELS:
        return "slide"
    return "image"


def _pixels(path: Path) -> int:
    """Pixel count from the header only (0 when the header cannot be read: the worker reports it)."""
    from PIL import Image

    from training.pixels import header_size

    try:
        size = header_size(path)
    except Image.DecompressionBombError:
        return 2**62
    return 0 if size is None else size[0] * size[1]


def _is_candidate(name: str) -> bool:
    if name.startswith("."):
        return False
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_SUFFIXES or ext in SLIDE_EXTENSIONS


def walk_folder(root: Path, failures: list[EnumFailure]) -> Iterator[Path]:
    """Yield image / slide files under ``root`` recursively, in sorted order; unreadable folders are recorded."""

    def onerror(exc: OSError) -> None:
        where = display_path(exc.filename or root)
        failures.append(EnumFailure(where, "read", f"cannot list folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if _is_candidate(name):
                yield Path(dirpath) / name


def _admit(path: str | Path, roots: Roots | None, failures: list[EnumFailure], source: str | None = None) -> str | None:
    """The canonical path of a file to ingest, or None after recording why it is refused.

    Refused, each by itself: outside the allowed roots (checked before the file is touched, one reason whatever
    exists there), a NUL byte, a file name that is not valid UTF-8 (stored paths are UTF-8 text).
    """
    where = source or display_path(path)
    if roots is not None and not roots.contains(path):
        failures.append(EnumFailure(where, "read", REFUSED))
        return None
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        failures.append(
            EnumFailure(where, "read", "file name is not valid UTF-8: rename the file (paths are stored as UTF-8)")
        )
        return None
    try:
        return normalise_path(text)
    except PathError:
        failures.append(EnumFailure(where, "read", "not a valid path (it contains a NUL byte)"))
        return None


def _folder_label(path: Path, labels_from_folders: bool, failures: list[EnumFailure]) -> str | None | bool:
    """The folder label of a file (None without labels), or False after recording why it cannot be stored."""
    if not labels_from_folders:
        return None
    try:
        return check_label(path.parent.name)
    except RetrievalError as exc:
        failures.append(EnumFailure(display_path(path), "read", f"its folder name cannot be a label: {exc}"))
        return False


def read_manifest(path: str | Path, *, roots: Roots | None = None) -> Enumeration:
    """Parse a manifest CSV: ``path`` (required), ``label``, ``slide``, ``dataset``, ``group``, any extra columns.

    The item's group is the first non-empty of ``group``, ``patient``, ``case``, ``slide``.

    Relative paths are relative to the manifest's folder. Extra columns are kept per item as metadata. With
    ``roots``, a row whose file resolves outside them (absolute, ``../``, through a symlink) is refused with
    :data:`~ingest.paths.REFUSED` before it is opened.

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
        admitted = _admit(file_path, roots, out.failures, source=f"{where} ({display_path(values['path'])})")
        if admitted is None:
            continue
        try:
            label = check_label(values.get("label"))
        except RetrievalError as exc:
            out.failures.append(EnumFailure(where, "read", f"manifest row {lineno}: {exc}"))
            continue
        extra = {k: v for k, v in values.items() if k not in MANIFEST_KNOWN and v != ""}
        out.items.append(
            SourceItem(
                path=admitted,
                kind=classify(admitted),
                label=label,
                dataset=values.get("dataset") or None,
                slide=values.get("slide") or None,
                extra=extra,
                group=manifest_group(values),
            )
        )
    return out


def enumerate_sources(
    paths: Sequence[str | Path],
    *,
    labels_from_folders: bool = False,
    manifest: str | Path | None = None,
    roots: Roots | None = None,
) -> Enumeration:
    """Enumerate files from folders / files and an optional manifest.

    Args:
        paths: folders (walked recursively) and single files.
        labels_from_folders: label each image with the name of the folder it sits in (class folders).
        manifest: a manifest CSV (see :func:`read_manifest`).
        roots: allowed roots; every input, folder entry, the manifest and its rows must lie inside them.

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
        if _admit(p, roots, out.failures) is None:
            continue
        if p.is_dir():
            found = 0
            for f in walk_folder(p, out.failures):
                found += 1
                admitted = _admit(f, roots, out.failures)
                label = _folder_label(f, labels_from_folders, out.failures)
                if admitted is not None and label is not False:
                    add(SourceItem(admitted, classify(admitted), label if isinstance(label, str) else None))
            if found == 0:
                logger.warning(
                    "%s: no image or slide files found (extensions: %s)", p, ", ".join(sorted(IMAGE_SUFFIXES))
                )
        elif p.exists() or p.is_symlink():
            admitted = normalise_path(p)
            add(SourceItem(admitted, classify(admitted, peek=True), p.parent.name if labels_from_folders else None))
        else:
            out.failures.append(EnumFailure(display_path(p), "read", "path does not exist (check the path)"))
    if manifest is not None:
        if roots is not None and not roots.contains(manifest):
            out.failures.append(EnumFailure(display_path(manifest), "read", REFUSED))
            return out
        parsed = read_manifest(manifest, roots=roots)
        for item in parsed.items:
            add(item)
        out.failures.extend(parsed.failures)
    return out
