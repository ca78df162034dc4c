"""deploy/docker-compose.yml and deploy/Dockerfile, checked without a Docker engine.

- The compose file passes `docker-compose config` (or `docker compose config`) when either is
  installed; its structure is checked here in every case, on the file as the tool resolved it
  (or as PyYAML reads it, merge keys included, when no tool is installed).
- The Dockerfile's targets install exactly one workspace package each, run its console
  script as uid 10001, declare the service's port and a health check on /healthz.
Images are not built here (no Docker engine); docs/operations.md says what that leaves open.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"

#: service -> (workspace package, console script, port)
SERVICES = {
    "artifact-ingest": ("ferry-artifact-ingest", "ferry-artifact-ingest", 8081),
    "git-writer": ("ferry-git-writer", "ferry-git-writer", 8082),
    "promotion": ("ferry-promotion", "ferry-promotion", 8080),
    "cluster-watcher": ("ferry-cluster-watcher", "ferry-cluster-watcher", 8083),
    "notifier": ("ferry-notifier", "ferry-notifier", 8084),
    "insights": ("ferry-insights", "ferry-insights", 8085),
}
SCALABLE = ("artifact-ingest", "git-writer", "notifier")


def _compose_tool() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], check=False, capture_output=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as the compose tool resolves it, or as YAML when there is none."""
    tool = _compose_tool()
    if tool is None:
        data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
        return data
    done = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{' '.join(tool)} config failed:\n{done.stderr}"
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


def test_compose_config_passes_the_compose_tool() -> None:
    tool = _compose_tool()
    if tool is None:
        pytest.skip(
            "neither docker-compose nor `docker compose` is installed "
            "(apt-get install docker-compose); the structure tests below still ran"
        )
    done = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config", "--quiet"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_compose_runs_every_service_with_its_image_target_and_port(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {"rabbitmq", "postgres", "init", "k8s-simulator", *SERVICES} == set(services)
    for name, (_, _, port) in SERVICES.items():
        service = services[name]
        assert service["build"]["target"] == name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        env = service["environment"]
        assert env["FERRY_HTTP_PORT"] == str(port)
        assert env["FERRY_HTTP_HOST"] == "0.0.0.0"
        assert env["FERRY_EXCHANGE"] == "ferry.events"
        assert service["read_only"] is True
        assert "/data" in service["tmpfs"]
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_scalable_services_publish_no_host_port(compose: dict[str, Any]) -> None:
    for name in SCALABLE:
        service = compose["services"][name]
        assert "ports" not in service, f"{name} publishes a host port: --scale would clash"
        assert "container_name" not in service
    assert "ports" not in compose["services"]["cluster-watcher"]


def _dev_password_matches(user: str, password: str) -> bool:
    users = {u["name"]: u for u in json.loads(DEFINITIONS.read_text(encoding="utf-8"))["users"]}
    raw = base64.b64decode(users[user]["password_hash"])
    return hashlib.sha256(raw[:4] + password.encode()).digest() == raw[4:]


def test_each_service_logs_in_to_rabbitmq_as_its_own_user(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        url = urlsplit(compose["services"][name]["environment"]["FERRY_AMQP_URL"])
        assert url.username == f"ferry-{name}"
        assert url.password is not None
        assert url.hostname == "rabbitmq"
        assert url.path == "/ferry"
        assert _dev_password_matches(url.username, url.password)


def test_broker_database_and_config_repo_are_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = " ".join(str(v) for v in services["rabbitmq"]["volumes"])
    assert "definitions.json:/etc/rabbitmq/definitions.json" in mounts
    assert "15672" in " ".join(str(p) for p in services["rabbitmq"]["ports"])
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text(encoding="utf-8")
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf
    for name in ("promotion", "notifier", "insights"):
        env = services[name]["environment"]
        assert urlsplit(env["FERRY_DATABASE_URL"]).hostname == "postgres"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    sql = (ROOT / "deploy" / "compose" / "postgres-init.sql").read_text(encoding="utf-8")
    assert "CREATE DATABASE promotion" in sql
    assert "CREATE DATABASE notifier" in sql
    assert "CREATE DATABASE insights" in sql

    def repo_mount(service: str) -> str:
        volumes = [str(v) for v in services[service]["volumes"]]
        (mount,) = (v for v in volumes if v.startswith("config-repo:"))
        return mount.removesuffix(":rw")  # the tool writes the default mode out

    assert repo_mount("git-writer") == "config-repo:/srv/config-repo"
    assert repo_mount("promotion") == "config-repo:/srv/config-repo:ro"  # reads only
    for name in ("git-writer", "promotion"):
        assert services[name]["environment"]["FERRY_CONFIG_REPO_URL"] == (
            "/srv/config-repo/ferry-config.git"
        )
    assert "config-repo" in compose["volumes"]
    assert services["cluster-watcher"]["network_mode"] == "service:k8s-simulator"


# ---------------------------------------------------------------------- Dockerfile


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = [line]
            result[match.group(2) or match.group(1)] = current
        elif current is not None:
            current.append(line)
    return result


def lineage(name: str, all_stages: dict[str, list[str]]) -> list[str]:
    chain = []
    while name in all_stages:
        chain.append(name)
        name = all_stages[name][0].split()[1]
    return chain


def test_each_service_image_runs_its_console_script_as_a_non_root_user() -> None:
    all_stages = stages()
    for name, (package, script, port) in SERVICES.items():
        stage = all_stages[name]
        assert "runtime" in lineage(name, all_stages)
        assert "USER 10001:10001" in stage
        assert f'CMD ["{script}"]' in stage
        assert f"ENV FERRY_HTTP_PORT={port}" in stage
        assert f"EXPOSE {port}" in stage
        assert f"COPY --from=build-{name} /app/venv /app/venv" in stage
        build = " ".join(all_stages[f"build-{name}"])
        assert f"uv sync --frozen --no-dev --no-editable --package {package}" in build
        assert f"--no-install-workspace --package {package}" in build
        scripts = tomllib.loads(
            (ROOT / ("cli" if name == "cli" else f"services/{name}") / "pyproject.toml").read_text(
                encoding="utf-8"
            )
        )["project"]["scripts"]
        assert script in scripts
    runtime = " ".join(all_stages["runtime"])
    assert "HEALTHCHECK" in runtime
    assert "/healthz" in runtime
    assert "python:3.11-slim" in DOCKERFILE.read_text(encoding="utf-8")


def test_the_cli_image_is_the_default_target_for_ci_jobs() -> None:
    all_stages = stages()
    assert list(all_stages)[-1] == "cli"
    cli = all_stages["cli"]
    assert 'ENTRYPOINT ["ferry"]' in cli
    assert "USER 10001:10001" in cli
    build = " ".join(all_stages["build-cli"])
    assert "--package ferry-cli" in build
    scripts = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text(encoding="utf-8"))
    assert "ferry" in scripts["project"]["scripts"]


def test_the_simulator_image_runs_the_kube_sim_package() -> None:
    all_stages = stages()
    build = " ".join(all_stages["build-k8s-simulator"])
    assert "--package ferry-kube-sim" in build
    image = all_stages["k8s-simulator"]
    assert 'ENTRYPOINT ["python", "-m", "ferry_kube_sim"]' in image
    assert "USER 10001:10001" in image
    package = ROOT / "tools" / "kube-sim" / "src" / "ferry_kube_sim"
    assert (package / "__main__.py").is_file()
    project = tomllib.loads((ROOT / "tools/kube-sim/pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "ferry-kube-sim"


def test_every_packaged_name_is_a_workspace_member_in_the_lock() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    locked = {p["name"] for p in lock["package"]}
    packages = set(re.findall(r"--package (ferry-[a-z-]+)", DOCKERFILE.read_text(encoding="utf-8")))
    assert packages == {p for p, _, _ in SERVICES.values()} | {"ferry-cli", "ferry-kube-sim"}
    assert packages <= locked


def test_dockerignore_keeps_the_context_to_sources_and_the_lock() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the build copies back in
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "uv.lock", "libs/*/src/", "services/*/src/", "cli/src/"} <= allowed
    copied = re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert copied
    for source in (c.rstrip("/") for c in copied):
        # A file the context keeps, or a directory under which the context keeps something.
        kept = any(
            fnmatch.fnmatch(source, a.rstrip("/")) or a.startswith(source + "/") for a in allowed
        )
        assert kept, f"COPY {source} is excluded by .dockerignore"


def test_the_compose_init_step_creates_the_repo_and_tokens_once(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("compose_init", ROOT / "deploy/compose/init.py")
    assert spec is not None
    assert spec.loader is not None
    init: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(init)
    init.REPO = tmp_path / "config-repo" / "ferry-config.git"
    init.CREDENTIALS = tmp_path / "credentials"
    init.KUBE = tmp_path / "kube"
    for directory in (init.REPO.parent, init.CREDENTIALS, init.KUBE):
        directory.mkdir(parents=True)
    init.UID, init.GID = os.getuid(), os.getgid()  # the test cannot chown to 10001

    init.main()
    dev_token = (init.CREDENTIALS / "dev-token").read_text(encoding="utf-8").strip()
    tokens = yaml.safe_load((init.CREDENTIALS / "tokens.yaml").read_text(encoding="utf-8"))
    init.main()  # a second start changes nothing

    assert (init.CREDENTIALS / "dev-token").read_text(encoding="utf-8").strip() == dev_token
    head = subprocess.run(
        ["git", "--git-dir", str(init.REPO), "symbolic-ref", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert head.stdout.strip() == "refs/heads/main"
    entries = {t["subject"]: t for t in tokens["tokens"]}
    assert entries["dev"]["roles"] == ["admin"]
    assert entries["dev"]["sha256"] == hashlib.sha256(dev_token.encode()).hexdigest()
    assert (init.CREDENTIALS / "dev-token").stat().st_mode & 0o777 == 0o600
