"""Per-epoch metric logs written next to the checkpoint: ``<stem>.metrics.csv`` and ``<stem>.metrics.json``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any


def metrics_paths(checkpoint: str | Path) -> tuple[Path, Path]:
    """``(csv, json)`` metric log paths next to a checkpoint."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".metrics.csv"), p.with_name(p.stem + ".metrics.json")


def write_metrics(checkpoint: str | Path, config: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Rewrite both logs (temp file + rename each) with every epoch row so far."""
    csv_path, json_path = metrics_paths(checkpoint)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, csv_path)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps({"config": config, "epochs": history}, indent=2))
    os.replace(tmp, json_path)


def read_metrics(checkpoint: str | Path) -> list[dict[str, Any]] | None:
    """The per-epoch rows of the CSV log next to ``checkpoint`` (numbers as floats), or None when there is none (a
    checkpoint trained elsewhere)."""
    csv_path, _ = metrics_paths(checkpoint)
    if not csv_path.is_file():
        return None
    rows: list[dict[str, Any]] = []
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    parsed[key] = value
            rows.append(parsed)
    return rows
