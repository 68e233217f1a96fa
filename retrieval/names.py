"""Validation of the names and labels users give, in one place, before anything is written.

SQLite accepts any length in a ``VARCHAR(200)`` column where PostgreSQL refuses it, and a version name is mapped
to a Qdrant collection name: both are checked here, up front, so the two databases behave alike and a bad name
gets one clear message instead of a database traceback.
"""

from __future__ import annotations

import re

from retrieval.errors import RetrievalError

#: Longest label / dataset name (the ``String(200)`` columns of ``retrieval.models``).
MAX_LABEL = 200
MAX_DATASET_NAME = 200
#: Encoder version names: they become Qdrant collection names (``hq_<name>``), so only these characters.
VERSION_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,190}")


class NameError_(RetrievalError):  # noqa: N801 - trailing underscore: not the builtin NameError
    """A label, dataset or version name that cannot be stored as given."""


def check_label(label: str | None) -> str | None:
    """A label as stored (``None`` / empty -> ``None``).

    Raises:
        NameError_: longer than :data:`MAX_LABEL` characters, or containing a NUL byte.
    """
    if label is None or label == "":
        return None
    if len(label) > MAX_LABEL:
        raise NameError_(f"label {label[:40]!r}... is {len(label)} characters long: at most {MAX_LABEL} are stored")
    if "\x00" in label:
        raise NameError_(f"label {label!r} contains a NUL byte")
    return label


def check_dataset_name(name: str) -> str:
    """A dataset name as stored (stripped).

    Raises:
        NameError_: empty, longer than :data:`MAX_DATASET_NAME`, or containing a NUL byte.
    """
    name = name.strip()
    if not name:
        raise NameError_("dataset name is empty: pass --dataset NAME")
    if len(name) > MAX_DATASET_NAME or "\x00" in name:
        raise NameError_(f"dataset name {name[:40]!r}... is too long or has a NUL byte (at most {MAX_DATASET_NAME})")
    return name


def check_version_name(name: str) -> str:
    """An encoder version name, checked before anything is registered.

    Raises:
        NameError_: not 1-190 letters, digits, ``_``, ``.`` or ``-``.
    """
    if not VERSION_NAME.fullmatch(name):
        raise NameError_(
            f"encoder version name {name!r} is not allowed: use 1-190 letters, digits, '_', '.' or '-' "
            "(it names the version's vector collection)"
        )
    return name
