"""The group of an image (patient, case, slide or source tile): one field, one set of rules, used by ingestion
(to fill it), pair generation, the group split of ``evaluate --split group`` and top-k exclusion.

Tiles of one slide (or images of one patient) look alike for reasons other than their category; a reviewer
expects them never on both sides of a split and never paired with each other. Where an image's group comes from,
first match wins:

1. a manifest's ``group``, ``patient``, ``case`` or ``slide`` column (in that order);
2. a groups CSV (``path,group``: an absolute path, a path relative to the CSV, or a bare file name);
3. ``--group-from REGEX`` on the file name (the first capture group, or the whole match);
4. the slide a tile was cut from (``slide:<slide id>``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.errors import RetrievalError

#: Manifest columns that name a group, most specific grouping first.
MANIFEST_GROUP_COLUMNS = ("group", "patient", "case", "slide")
MAX_GROUP_LENGTH = 200


class GroupError(RetrievalError):
    """A group rule cannot be used (bad regex, unreadable or malformed groups CSV)."""


def slide_group(slide_id: int) -> str:
    """The group of a tile whose image has no other group: its slide."""
    return f"slide:{int(slide_id)}"


def image_group(group: str | None, slide_id: int | None) -> str | None:
    """The group an image counts in: its own ``group``, else (a tile) its slide's, else None (no group).

    This is the one rule behind "never pair or return two images of the same group" (``exclude_same_group`` of
    pair generation, evaluation and top-k): an image's group is its ``Image.group`` column (patient / case / source
    tile, from the rules above), and a tile stored without one is grouped by the slide it was cut from.
    """
    if group is not None:
        return group
    return slide_group(slide_id) if slide_id is not None else None


def manifest_group(values: Mapping[str, str]) -> str | None:
    """The group named by a manifest row (first non-empty of ``group``, ``patient``, ``case``, ``slide``)."""
    for key in MANIFEST_GROUP_COLUMNS:
        value = (values.get(key) or "").strip()
        if value:
            return value[:MAX_GROUP_LENGTH]
    return None


def compile_group_regex(pattern: str) -> re.Pattern[str]:
    """Compile ``--group-from``; the first capture group (else the whole match) of the file name is the group."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise GroupError(f"--group-from {pattern!r} is not a valid regular expression: {exc}") from exc


def read_groups_csv(path: str | Path) -> dict[str, str]:
    """Read a groups CSV with columns ``path,group`` into ``{key: group}``.

    Keys are the absolute path (relative paths are relative to the CSV's folder) and, for lookups by name, the
    bare file name as written. Rows with an empty path or group are errors naming the line.

    Raises:
        GroupError: the file cannot be read, lacks a column, or has a bad row.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise GroupError(f"{p}: cannot read groups CSV: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "path" not in header or "group" not in header:
        raise GroupError(f"{p}: a groups CSV needs the columns path,group (found: {', '.join(header) or 'none'})")
    reader.fieldnames = header
    out: dict[str, str] = {}
    for lineno, row in enumerate(reader, start=2):
        name, group = (row.get("path") or "").strip(), (row.get("group") or "").strip()
        if not name or not group:
            raise GroupError(f"{p}:{lineno}: empty path or group")
        file_path = Path(name).expanduser()
        if "/" not in name and "\\" not in name:
            out[name] = group[:MAX_GROUP_LENGTH]
        out[str((file_path if file_path.is_absolute() else p.parent / file_path).absolute())] = group[:MAX_GROUP_LENGTH]
    return out


@dataclass
class GroupRules:
    """The CLI / API group options of an ingestion (``--groups CSV``, ``--group-from REGEX``)."""

    table: dict[str, str] = field(default_factory=dict)
    regex: re.Pattern[str] | None = None

    @classmethod
    def build(cls, *, groups_csv: str | Path | None = None, group_from: str | None = None) -> GroupRules:
        return cls(
            read_groups_csv(groups_csv) if groups_csv else {},
            compile_group_regex(group_from) if group_from else None,
        )

    def __bool__(self) -> bool:
        return bool(self.table) or self.regex is not None

    def group_of(self, path: str) -> str | None:
        """The group these rules give the file at ``path`` (absolute), or None."""
        hit = self.table.get(path) or self.table.get(Path(path).name)
        if hit:
            return hit
        if self.regex is not None:
            m = self.regex.search(Path(path).name)
            if m:
                value = next((g for g in m.groups() if g), None) or m.group(0)
                return value[:MAX_GROUP_LENGTH] if value else None
        return None


def split_groups(
    groups: Sequence[Hashable | None], *, fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of items by group: ``(calibration_mask, held_out_mask)`` over the items, no group on both sides.

    Items without a group (None) are their own group. Groups are sorted before the seeded shuffle, so the split
    depends only on the group names and the seed, not on the order the items were read in.

    Raises:
        GroupError: ``fraction`` is not in (0, 1) or there are fewer than 2 groups.
    """
    if not 0.0 < fraction < 1.0:
        raise GroupError(f"calibration fraction {fraction} must be between 0 and 1 (exclusive)")
    keys = [("item", i) if g is None else ("group", str(g)) for i, g in enumerate(groups)]
    names = sorted(set(keys))
    if len(names) < 2:
        raise GroupError(f"a group split needs at least 2 groups, found {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    n_cal = min(len(names) - 1, max(1, round(fraction * len(names))))
    cal_names = {names[int(i)] for i in order[:n_cal]}
    cal = np.array([k in cal_names for k in keys], dtype=bool)
    return cal, ~cal


def count_groups(groups: Sequence[Hashable | None]) -> int:
    """Number of distinct groups among items that have one."""
    return len({g for g in groups if g is not None})
