"""No Docker engine runs here: check docker-compose.yml's shape and that every
command it runs exists in our CLIs."""

from pathlib import Path

import yaml
from reprofarm_agent.cli import app as agent_app
from reprofarm_cli.main import app
from typer.main import get_command

ROOT = Path(__file__).resolve().parent.parent


def test_compose_has_the_designed_services_with_real_commands():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "api",
        "lb",
        "worker",
        "analysis-worker",
        "beat",
        "flower",
        "linux-agent",
    }
    assert services["api"]["deploy"]["replicas"] >= 2  # more than one api process
    lb = (ROOT / services["lb"]["volumes"][0].split(":")[0]).read_text()
    assert "proxy_pass $api" in lb
    known = {
        "reprofarm": set(get_command(app).commands),  # type: ignore[attr-defined]
        "reprofarm-agent": set(get_command(agent_app).commands),  # type: ignore[attr-defined]
    }
    for name in ("api", "worker", "analysis-worker", "beat", "linux-agent"):
        program, sub, *_ = services[name]["command"]
        assert sub in known[program], f"{name}: {program} has no command {sub}"
        dockerfile = services[name]["build"]["dockerfile"]
        assert (ROOT / dockerfile).exists()
    # Every queue has a consumer, and analysis has its own (it must not starve planning).
    consumed = {
        name: _option(services[name]["command"], "--queues").split(",")
        for name in ("worker", "analysis-worker")
    }
    assert consumed == {"worker": ["controller", "build"], "analysis-worker": ["analysis"]}
    env = services["api"]["environment"]
    assert env["REPROFARM_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["REPROFARM_BROKER_URL"].startswith("redis://")


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]
