"""Byte-identical copies among query results: the same file stored in several datasets is one image to a user.

Copies are recognised by the stored content hash (``images.content_hash``: the sha256 of the file's bytes, or the
tile hash of slide + level + position + size for tiles), so two datasets holding the same file give one card, not
two cos-1.000 hits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from retrieval.models import Image


def content_hashes(image_ids: Iterable[int], *, session: Session) -> dict[int, str]:
    """Image id -> stored content hash (unknown ids are absent)."""
    wanted = sorted({int(i) for i in image_ids})
    out: dict[int, str] = {}
    for start in range(0, len(wanted), 900):  # stay under SQLite's bound-parameter limit
        rows = session.execute(
            select(Image.id, Image.content_hash).where(Image.id.in_(wanted[start : start + 900]))
        ).all()
        out.update({int(i): str(h) for i, h in rows})
    return out


@dataclass(frozen=True)
class CopyGroup:
    """One image and its byte-identical copies, in result order.

    Attributes:
        ids: the image ids, the best-ranked first (the one a card shows).
        positions: their positions (0-based) in the result list, same order.
    """

    ids: tuple[int, ...]
    positions: tuple[int, ...]

    @property
    def first(self) -> int:
        return self.ids[0]

    @property
    def copies(self) -> tuple[int, ...]:
        """The copies after the first."""
        return self.ids[1:]


def group_copies(ranked_ids: Sequence[int], hashes: Mapping[int, str]) -> list[CopyGroup]:
    """Group a ranked result list by content hash, keeping rank order (a group sits where its best copy ranked).

    Args:
        ranked_ids: image ids, best first.
        hashes: image id -> content hash (:func:`content_hashes`); an id without a hash is its own group.

    Returns:
        One group per distinct content, ordered by the rank of its first member.
    """
    order: list[str | int] = []
    members: dict[str | int, list[tuple[int, int]]] = {}
    for pos, image_id in enumerate(ranked_ids):
        key: str | int = hashes.get(int(image_id), int(image_id))
        if key not in members:
            members[key] = []
            order.append(key)
        members[key].append((int(image_id), pos))
    return [
        CopyGroup(ids=tuple(i for i, _ in members[key]), positions=tuple(p for _, p in members[key])) for key in order
    ]
