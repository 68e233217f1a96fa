"""docker-compose.yml and its overrides, checked without a Docker engine.

Schema: the Compose Specification JSON schema (vendored by the `check-jsonschema` dev dependency), validated after
interpolation exactly as `docker compose config` would. Commands: every service built from our image runs a real
`histoquery` subcommand whose argv parses with the real CLI parser, or a real module (`python -m ...`).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from retrieval.settings import Settings
from tests.support.e2e_compose import (
    MissingVariableError,
    compose_schema,
    interpolate,
    load_yaml,
    merge,
    read_env_file,
    variables,
)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDES = sorted((ROOT / "infra").glob("compose.*.yml"))
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
REQUIRED = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "QDRANT_API_KEY")
THIRD_PARTY_BINARIES = {"qdrant": "./qdrant", "redis": "redis-server", "postgres": "postgres"}


def _env() -> dict[str, str]:
    """The example env file with the required secrets filled in, as a user would."""
    env = read_env_file(ENV_EXAMPLE)
    env.update({name: f"test-{name.lower().replace('_', '-')}" for name in REQUIRED})
    return env


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return compose_schema()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(interpolate(load_yaml(COMPOSE), _env()))


def _validate(document: dict[str, Any], schema: dict[str, Any], what: str) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    detail = "\n".join(f"  {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])
    assert not errors, f"{what} does not follow the Compose Specification:\n{detail}"


def _is_ours(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("histoquery")


def test_schema_is_the_compose_spec(schema: dict[str, Any]) -> None:
    assert schema["$id"] == "compose_spec.json"
    assert {"services", "volumes", "networks"} <= set(schema["properties"])


def test_compose_file_follows_the_spec(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    _validate(compose, schema, "docker-compose.yml")
    # The raw file (before interpolation) must be valid too: that is what editors and linters see.
    _validate(load_yaml(COMPOSE), schema, "docker-compose.yml (raw)")


def test_a_broken_file_is_rejected(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    """The schema check has teeth: a typo'd key and a wrong type are both reported."""
    broken = merge(compose, {"services": {"redis": {"helthcheck": {"test": "x"}}, "postgres": {"ports": "5432"}}})
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
    assert len(errors) >= 2


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda p: p.name)
def test_overrides_follow_the_spec(override: Path, compose: dict[str, Any], schema: dict[str, Any]) -> None:
    document = dict(interpolate(load_yaml(override), _env()))
    _validate(document, schema, override.name)
    _validate(merge(compose, document), schema, f"docker-compose.yml + {override.name}")


def test_expected_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"qdrant", "redis", "postgres", "migrate", "worker", "worker-gpu", "dashboard"} <= set(services)
    assert services["postgres"]["healthcheck"]["test"]
    assert any(
        v["target"] == "/var/lib/postgresql/data" and v["type"] == "volume" for v in services["postgres"]["volumes"]
    )
    assert any(v["target"] == "/qdrant/storage" and v["type"] == "volume" for v in services["qdrant"]["volumes"])
    assert services["migrate"]["restart"] == "no"
    for name in ("worker", "worker-gpu", "dashboard"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    named = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume["type"] == "volume":
                assert volume["source"] in named


def test_gpu_worker_reserves_a_gpu_and_cpu_worker_does_not(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "cu1" in gpu["build"]["args"]["TORCH_INDEX_URL"]
    assert "--gpu" in gpu["command"]
    cpu = compose["services"]["worker"]
    assert "deploy" not in cpu and "--gpu" not in cpu["command"]
    assert cpu["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")


def _check_histoquery_argv(argv: list[str]) -> None:
    from cli.main import SUBCOMMANDS, build_parser

    assert argv[0] == "histoquery", argv
    assert argv[1] in SUBCOMMANDS, f"{argv[1]!r} is not a histoquery subcommand ({', '.join(SUBCOMMANDS)})"
    parser = build_parser()
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as exc:  # argparse exits on an unknown subcommand or option
        raise AssertionError(f"`{' '.join(argv)}` does not parse with cli.main.build_parser()") from exc
    assert callable(getattr(args, "handler", None)), f"`{' '.join(argv)}` has no handler"


def _commands(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, service) for name, service in document["services"].items() if "command" in service]


def test_every_command_is_a_real_entry_point(compose: dict[str, Any]) -> None:
    documents = [compose] + [dict(interpolate(load_yaml(o), _env())) for o in OVERRIDES]
    checked = 0
    for document in documents:
        for name, service in _commands(document):
            argv = service["command"]
            assert isinstance(argv, list), f"{name}: use the exec (list) form of command"
            if _is_ours(service) or name in ("migrate", "worker", "worker-gpu", "dashboard"):
                if argv[:2] == ["python", "-m"]:
                    assert importlib.util.find_spec(argv[2]) is not None, f"{name}: no module {argv[2]}"
                else:
                    _check_histoquery_argv(argv)
                checked += 1
            else:
                base = re.sub(r"-\d+$", "", name)
                assert argv[0] == THIRD_PARTY_BINARIES[base], f"{name}: unexpected command {argv}"
    assert checked >= 4
    for name, service in compose["services"].items():
        if _is_ours(service):
            assert "command" in service, f"{name}: our image's default command only prints help"


def test_required_variables_fail_loudly() -> None:
    raw = load_yaml(COMPOSE)
    ops = variables(raw)
    for name in REQUIRED:
        assert ops[name] == ":?", f"{name} must be required with ${{{name}:?message}}"
    env = _env()
    for name in REQUIRED:
        partial = {k: v for k, v in env.items() if k != name}
        with pytest.raises(MissingVariableError, match=name):
            interpolate(raw, partial)
        with pytest.raises(MissingVariableError, match=name):
            interpolate(raw, {**partial, name: ""})


def test_no_secret_is_baked_in() -> None:
    secret_like = re.compile(r"(PASSWORD|API_KEY|SECRET|TOKEN)", re.I)
    for path in [COMPOSE, *OVERRIDES]:
        raw = load_yaml(path)
        for service in raw["services"].values():
            environment = service.get("environment") or {}
            for key, value in environment.items():
                if secret_like.search(key):
                    assert "${" in str(value), f"{path.name}: {key} is hard-coded"
        text = path.read_text()
        assert not re.search(r"://[^:/\s]*:(?!\$\{)[^@\s]+@", text), f"{path.name}: credentials in a URL"
    example = read_env_file(ENV_EXAMPLE)
    for name in REQUIRED:
        assert example[name] == "", f".env.example must leave {name} empty"


def test_env_example_documents_every_variable() -> None:
    example = read_env_file(ENV_EXAMPLE)
    referenced: set[str] = set()
    for path in [COMPOSE, *OVERRIDES]:
        referenced |= set(variables(load_yaml(path)))
    assert referenced <= set(example), f"not in infra/.env.example: {sorted(referenced - set(example))}"


def test_histoquery_environment_builds_valid_settings(compose: dict[str, Any]) -> None:
    """Every HISTOQUERY_* variable names a real Settings field and the values validate."""
    fields = set(Settings.model_fields)
    for name, service in compose["services"].items():
        if not _is_ours(service):
            continue
        environment = service["environment"]
        prefixed = {k[len("HISTOQUERY_") :].lower(): v for k, v in environment.items() if k.startswith("HISTOQUERY_")}
        assert set(prefixed) <= fields, f"{name}: unknown settings {sorted(set(prefixed) - fields)}"
        settings = Settings.model_validate(_settings_input(prefixed))
        assert settings.vector_backend == "server" and settings.qdrant_url == "http://qdrant:6333"
        assert settings.db_url.startswith("postgresql+psycopg://histoquery:test-postgres-password@postgres:5432/")
        assert settings.broker_url == "redis://:test-redis-password@redis:6379/0"
        assert settings.allowed_roots == [Path("/data")]


def _settings_input(values: dict[str, str]) -> dict[str, Any]:
    """Decode env strings the way pydantic-settings does for complex fields (JSON for lists)."""
    import json

    out: dict[str, Any] = dict(values)
    for key, value in values.items():
        annotation = str(Settings.model_fields[key].annotation)
        if annotation.startswith("list"):
            out[key] = json.loads(value)
    return out


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = ROOT / "infra" / "Dockerfile"
    text = dockerfile.read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            sources = line.split()[1:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"infra/Dockerfile copies {source}, which does not exist"
    ignore = (ROOT / "infra" / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignore and ".env" in ignore
    for service in load_yaml(COMPOSE)["services"].values():
        build = service.get("build")
        if isinstance(build, dict):
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
