"""The GPU measurement kit (benchmarks/gpu/*.sh) stays runnable: valid shell, and the wheels it carries to the
device are the versions this project is installed and tested with (a drifted pin would fail there, not here)."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu"


@pytest.mark.parametrize("script", sorted(p.name for p in KIT.glob("*.sh")))
def test_kit_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(KIT / script)], check=True)


def test_carried_wheel_pins_match_the_installed_versions() -> None:
    pins = re.findall(r'"([A-Za-z0-9_.\-]+)==([^"]+)"', (KIT / "prepare.sh").read_text())
    assert len(pins) >= 10
    checked = 0
    for name, pinned in pins:
        try:
            installed = version(name)
        except PackageNotFoundError:
            assert name == "byol-pytorch", f"{name} is carried to the GPU machine but not installed here"
            continue  # the optional comparison baseline (`pip install -e .[bench]`)
        assert installed == pinned, f"benchmarks/gpu/prepare.sh pins {name}=={pinned}, installed {installed}"
        checked += 1
    assert checked >= 10
