"""explain over the database: cells from the runs (rollups or a job's scan) with the
hardware facts of their configurations, on SQLite and Postgres."""

from reprofarm_db import explain
from reprofarm_db.engine import transaction
from reprofarm_db.models import Job, Run

from tests.factories import register_agent


def _runs(s, agent, *, chance, cpus, hung, passed, job_id=1):
    if s.get(Job, job_id) is None:
        s.add(Job(id=job_id, spec={}, status="done"))
        s.flush()
    for status in ["hung"] * hung + ["passed"] * passed:
        s.add(
            Run(
                job_id=job_id,
                status=status,
                scenario="control-deadlock",
                go_version="1.25.0",
                cpus=cpus,
                affinity="compact",
                control_chance=chance,
                agent_id=agent.id,
                hardware_config_id=agent.hardware_config_id,
                iterations=10,
                duration_s=1.0,
                selector={},
            )
        )


def test_explain_finds_the_chance_and_not_the_cpus_from_the_rollups_and_a_job(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        for cpus in (1, 2):
            _runs(s, a, chance=0.0, cpus=cpus, hung=0, passed=6)
            _runs(s, a, chance=1e-3, cpus=cpus, hung=6, passed=0)
    with transaction(sessions) as s:
        for job_id in (None, 1):
            report = explain.explain(s, job_id=job_id)
            by = {f.factor: f for f in report.factors}
            assert by["control_chance"].q < 0.05, by
            assert by["cpus"].q >= 0.05, by
            assert report.constant["arch"] == "arm64"
            assert report.constant["pe_cores"] == "uniform"


def test_arch_and_hypervisor_of_the_agents_are_aliased_when_every_arm64_is_a_vm(sessions):
    with transaction(sessions) as s:
        vm, _ = register_agent(s, "vm", arch="arm64", hypervisor="hyper-v")
        metal, _ = register_agent(s, "metal", arch="amd64")
        _runs(s, vm, chance=None, cpus=1, hung=5, passed=20)
        _runs(s, metal, chance=None, cpus=1, hung=1, passed=24)
    with transaction(sessions) as s:
        report = explain.as_dict(explain.explain(s, scenario="control-deadlock"))
    assert ["arch", "hypervisor", "cpu_model"] in report["aliased"]
    assert report["constant"]["control_chance"] == "default"
    (factor,) = report["factors"]
    assert factor["aliased_with"] == ["hypervisor", "cpu_model"]
