"""Competition-style batch files: a CSV of image pairs in, a CSV of decisions (and scores) out.

Input columns (header required, case-insensitive): ``image_a``, ``image_b`` (aliases ``a``/``b``, ``image1``/
``image2``, ``img1``/``img2``) and, for evaluation, ``same`` (aliases ``label``, ``match``; 0/1, true/false,
yes/no). Each image cell is a stored image id (digits) or an image file path (relative paths are relative to the
CSV's folder). Bad rows are reported with their line number; the good rows are still answered.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.api import PairResult, Retrieval
from retrieval.errors import PairsFileError, RetrievalError
from retrieval.resolve import parse_query

A_NAMES = ("image_a", "a", "image1", "img1", "img_a")
B_NAMES = ("image_b", "b", "image2", "img2", "img_b")
SAME_NAMES = ("same", "label", "match", "is_same")
_TRUE = {"1", "true", "yes", "y", "same"}
_FALSE = {"0", "false", "no", "n", "different"}

DECISION_COLUMNS = ("line", "image_a", "image_b", "cos", "d", "same", "threshold_cos", "threshold_d", "label", "error")


@dataclass(frozen=True)
class PairRow:
    """One usable CSV row (``line`` is the 1-based line number in the file, the header being line 1)."""

    line: int
    a_text: str
    b_text: str
    a: int | Path
    b: int | Path
    same: bool | None


@dataclass(frozen=True)
class RowError:
    line: int
    a_text: str
    b_text: str
    message: str


@dataclass
class PairsFile:
    path: Path
    rows: list[PairRow]
    errors: list[RowError]
    has_labels: bool


def _pick(header: list[str], names: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def read_pairs_csv(path: str | Path, *, require_labels: bool = False) -> PairsFile:
    """Parse a pairs CSV, collecting per-row problems.

    Raises:
        PairsFileError: the file is missing/unreadable, has no header with the needed columns, or has no rows.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PairsFileError(f"cannot read pairs file {path}: {exc}") from exc
    if not table:
        raise PairsFileError(f"pairs file {path} is empty: expected a header 'image_a,image_b[,same]' and rows")
    header = table[0]
    ia, ib, isame = _pick(header, A_NAMES), _pick(header, B_NAMES), _pick(header, SAME_NAMES)
    missing = [n for n, i in (("image_a", ia), ("image_b", ib)) if i is None]
    if require_labels and isame is None:
        missing.append("same")
    if missing:
        raise PairsFileError(
            f"pairs file {path} lacks column(s) {', '.join(missing)} (header: {','.join(header)}); "
            "expected 'image_a,image_b,same' with same = 0/1"
        )
    assert ia is not None and ib is not None
    rows: list[PairRow] = []
    errors: list[RowError] = []
    for line, cells in enumerate(table[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            errors.append(
                RowError(line, cells[ia] if ia < len(cells) else "", cells[ib] if ib < len(cells) else "",
                         f"{len(cells)} fields but the header has {len(header)}: quote values that hold commas")
            )  # fmt: skip
            continue
        a_text = cells[ia].strip() if ia < len(cells) else ""
        b_text = cells[ib].strip() if ib < len(cells) else ""
        try:
            if not a_text or not b_text:
                raise PairsFileError("image_a and image_b must both be given")
            same: bool | None = None
            if isame is not None:
                raw = cells[isame].strip().lower() if isame < len(cells) else ""
                if raw in _TRUE:
                    same = True
                elif raw in _FALSE:
                    same = False
                elif require_labels or raw:
                    raise PairsFileError(f"'same' must be 0 or 1, got {raw!r}")
            rows.append(
                PairRow(line, a_text, b_text, parse_query(a_text, path.parent), parse_query(b_text, path.parent), same)
            )
        except RetrievalError as exc:
            errors.append(RowError(line, a_text, b_text, str(exc)))
    if not rows and not errors:
        raise PairsFileError(f"pairs file {path} has a header but no rows")
    return PairsFile(path, rows, errors, isame is not None)


def answer_pairs(
    retrieval: Retrieval, pairs: PairsFile, threshold: float | None = None, threshold_d: float | None = None
) -> list[PairResult]:
    """Decide every usable row in one vectorised batch (row problems come back as ``PairResult.error``)."""
    return retrieval.pair_batch([(r.a, r.b) for r in pairs.rows], threshold=threshold, threshold_d=threshold_d)


def check_output_file(path: str | Path) -> Path:
    """Check that a decisions CSV can be written at ``path`` (a file, not a folder); creates its folder.

    Raises:
        PairsFileError: ``path`` is a folder, or its folder cannot be created.
    """
    path = Path(path)
    if path.is_dir():
        raise PairsFileError(f"{path} is a folder: give a file name for the decisions, e.g. {path / 'decisions.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PairsFileError(f"cannot create the folder of {path}: {exc.strerror or exc}") from exc
    return path


def write_decisions_csv(path: str | Path, pairs: PairsFile, results: Sequence[PairResult]) -> int:
    """Write one decision line per input row (in input order, bad rows with their error). Returns rows written.

    Raises:
        PairsFileError: ``path`` is a folder or cannot be written.
    """
    path = check_output_file(path)
    lines: list[tuple[int, list[str]]] = []
    for row, res in zip(pairs.rows, results, strict=True):
        ok = res.error is None and not math.isnan(res.cos)
        lines.append(
            (
                row.line,
                [
                    str(row.line),
                    row.a_text,
                    row.b_text,
                    f"{res.cos:.6f}" if ok else "",
                    f"{res.d:.6f}" if ok else "",
                    ("1" if res.same else "0") if ok else "",
                    f"{res.threshold_cos:.6f}",
                    f"{res.threshold_d:.6f}",
                    "" if row.same is None else str(int(row.same)),
                    res.error or "",
                ],
            )
        )
    for err in pairs.errors:
        lines.append((err.line, [str(err.line), err.a_text, err.b_text, "", "", "", "", "", "", err.message]))
    lines.sort(key=lambda t: t[0])
    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(DECISION_COLUMNS)
            writer.writerows(cells for _, cells in lines)
    except OSError as exc:
        raise PairsFileError(f"cannot write the decisions to {path}: {exc.strerror or exc}") from exc
    return len(lines)
