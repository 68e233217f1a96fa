from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import IngestError, PathNotAllowedError
from ingest.paths import check_allowed


def test_inside_root_is_resolved(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert check_allowed(root / "a" / ".." / "a", [root]) == (root / "a").resolve()
    assert check_allowed(root, [root]) == root.resolve()


def test_dotdot_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PathNotAllowedError, match="outside the allowed roots"):
        check_allowed(root / ".." / "other", [root])


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(IngestError, match="outside the allowed roots") as info:
        check_allowed(root / "link", [root])
    assert "secret" not in str(info.value)  # where a link points outside the roots is not revealed


def test_prefix_sibling_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data2").mkdir()
    with pytest.raises(PathNotAllowedError):
        check_allowed(tmp_path / "data2", [tmp_path / "data"])


def test_no_roots_means_disabled(tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowedError, match="HISTOQUERY_ALLOWED_ROOTS"):
        check_allowed(tmp_path, [])
