"""Helpers to read docker-compose files the way `docker compose` does, without a Docker engine.

Only what the tests need: load YAML (anchors and ``<<`` merge keys included), interpolate ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}`` and ``$$`` in every string, merge
override files onto the base file, and load the Compose Specification JSON schema that ``check-jsonschema`` vendors.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(KeyError):
    """A ``${VAR:?message}`` variable is unset or empty."""


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a compose file (safe loader: anchors and merge keys resolved)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping at the top level")
    return data


def _interpolate_str(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        if op is None:
            return current or ""
        unset = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return _interpolate_str(arg, env) if unset else str(current)
        if unset:
            raise MissingVariableError(f"{name}: {arg}")
        return str(current)

    return _VAR.sub(replace, value)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a parsed compose document (keys are left alone, as compose does)."""
    if isinstance(node, str):
        return _interpolate_str(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def variables(node: Any) -> dict[str, str | None]:
    """Every variable referenced in a document: name -> operator (``:?``, ``:-`` ... or None)."""
    found: dict[str, str | None] = {}
    if isinstance(node, str):
        for match in _VAR.finditer(node):
            name = match.group("braced") or match.group("named")
            if name:
                op = match.group("op")
                if found.get(name) not in (":?", "?"):
                    found[name] = op
    elif isinstance(node, list):
        for item in node:
            for key, op in variables(item).items():
                if found.get(key) not in (":?", "?"):
                    found[key] = op
    elif isinstance(node, dict):
        for value in node.values():
            for key, op in variables(value).items():
                if found.get(key) not in (":?", "?"):
                    found[key] = op
    return found


def merge(base: Any, override: Any) -> Any:
    """Merge an override file onto a base file (mappings merged, scalars replaced, command/entrypoint replaced)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            if key in out and key not in ("command", "entrypoint", "healthcheck"):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return copy.deepcopy(override)


def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema, as vendored by the ``check-jsonschema`` package (dev dependency)."""
    resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` env file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip()
    return env
