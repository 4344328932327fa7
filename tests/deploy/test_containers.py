"""The Dockerfile and the compose file, checked without a Docker engine: hadolint, and the compose specification."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ["contracts", "escrow", "billing", "notifications"]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_dockerfile_passes_hadolint():
    result = run(str(BIN / "hadolint"), "--failure-threshold", "info", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_a_user_and_checks_its_own_health():
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "\nUSER 10001" in final_stage and "\nHEALTHCHECK " in final_stage
    assert "uv sync --frozen --no-dev" in dockerfile  # the lock file's versions, without the test tools
    assert "HTTP_HOST=0.0.0.0" in final_stage


def test_the_image_copies_every_workspace_member():
    """`uv sync --frozen` fails on a workspace member whose pyproject.toml the build stage has not got."""
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    members = [p.parent.relative_to(ROOT) for g in globs for p in ROOT.glob(f"{g}/pyproject.toml")]
    for member in members:
        assert f"COPY {member}/pyproject.toml {member}/" in dockerfile, member
        assert f"COPY {member.parts[0]}/ {member.parts[0]}/" in dockerfile, member
        assert f"!{member.parts[0]}/" in ignored, member


def test_every_service_module_takes_the_commands_the_image_and_the_manifests_pass():
    """`docker run IMAGE <service> serve|migrate` is `python -m <service> serve|migrate`: every service's
    __main__ hands its definition to the one CLI of platform_runtime, which one run shows."""
    for name in SERVICES:
        main = (ROOT / "services" / name / name / "__main__.py").read_text()
        assert "from platform_runtime.cli import main" in main and "main(definition)" in main, name
    result = run(sys.executable, "-m", "escrow", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "serve" in result.stdout and "migrate" in result.stdout, result.stdout


def test_the_compose_file_follows_the_compose_specification():
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_service_after_its_migration_and_the_topics():
    services = compose()["services"]
    for name in SERVICES:
        assert services[name]["command"] == [name, "serve"]
        assert services[f"migrate-{name}"]["command"] == [name, "migrate"]
        after = services[name]["depends_on"]
        assert after[f"migrate-{name}"]["condition"] == "service_completed_successfully"
        assert after["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["HTTP_HOST"] == "0.0.0.0"
        assert services[name]["environment"]["DATABASE_URL"].endswith(f"@postgres:5432/{name}")


def test_compose_hands_each_service_only_settings_it_reads():
    from .settings_names import unknown

    services = compose()["services"]
    for name in SERVICES:
        for container in (services[name], services[f"migrate-{name}"]):
            assert not unknown(name, container["environment"]), (name, unknown(name, container["environment"]))


def test_compose_creates_a_database_for_every_url_it_hands_out():
    services = compose()["services"]
    created = set(services["database-roles"]["command"])
    wanted = {value.rsplit("/", 1)[1] for service in services.values()
              for key, value in (service.get("environment") or {}).items() if key.endswith("DATABASE_URL")}
    assert wanted == created == {*SERVICES, "gateway"}


def test_compose_runs_services_as_the_dml_roles_and_migrations_as_the_owners():
    """The superuser's password goes to the database-roles step alone."""
    services = compose()["services"]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("DATABASE_URL"):
                database = value.rsplit("/", 1)[1]
                role = "owner" if name.startswith("migrate-") else "app"
                assert value.startswith(f"postgresql+asyncpg://{database}_{role}:"), (name, key, value)
            assert name in ("postgres", "database-roles") or "POSTGRES_PASSWORD" not in value, (name, key)
    assert services["database-roles"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        after = services[f"migrate-{name}"]["depends_on"]
        assert after["database-roles"]["condition"] == "service_completed_successfully"


def test_compose_kafka_runs_kraft_without_auto_created_topics():
    kafka = compose()["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
