"""docker-compose.yaml stays consistent (no Docker engine here: `docker compose up` cannot run,
and tests/test_airflow_stack.py runs the same topology as local processes)."""

from pathlib import Path

import yaml

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _compose(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


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
    } == {"cellseg-local-dev-secret"}
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
    assert "requirements.lock" in text and "uv pip sync" in text
    for copied in ("pipeline", "dags", "configs", "pyproject.toml"):
        assert f"COPY {copied}" in text and (REPO / copied).exists()
