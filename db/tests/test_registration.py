"""Registration as statements: a lab of new machines of one model registering at once
makes one hardware configuration, and each agent's earlier token is revoked."""

from __future__ import annotations

import threading

import pytest
from reprofarm_db import registration, tokens
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, ApiToken, HardwareConfig
from reprofarm_protocol.jobs import AgentRegister
from sqlalchemy import func, select

from tests.factories import ENROLLMENT, hardware, machine_secret


def _request(name: str) -> AgentRegister:
    return AgentRegister(
        name=name,
        pools=["lab", "lab", "arm"],
        hardware=hardware(model="one new model"),
        machine_secret=machine_secret(name),
    )


def test_machines_of_a_new_model_registering_at_once_share_one_configuration(sessions):
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no race to lose")
    names = [f"storm-{i}" for i in range(16)]
    start = threading.Barrier(len(names))
    failures: list[BaseException] = []

    def register(name: str) -> None:
        try:
            start.wait()
            with transaction(sessions) as s:
                registration.register(s, request=_request(name), caller=ENROLLMENT)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=register, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(HardwareConfig)) == 1
        configs = set(s.scalars(select(Agent.hardware_config_id)))
        assert len(configs) == 1
        assert s.scalar(select(func.count()).select_from(Agent)) == len(names)


def test_registering_again_revokes_the_earlier_token_and_keeps_the_reboot_state(sessions):
    with transaction(sessions) as s:
        first, plain = registration.register(s, request=_request("again"), caller=ENROLLMENT)
        assert first.pools == ["arm", "lab"]
        s.execute(Agent.__table__.update().values(needs_reboot=True))
    with transaction(sessions) as s:
        again, second = registration.register(s, request=_request("again"), caller=ENROLLMENT)
        assert tokens.revoked_in(s) == [tokens.hash_secret(plain)]
    assert again.id == first.id
    assert again.needs_reboot
    with transaction(sessions) as s:
        assert tokens.authenticate(s, plain=plain) is None
        mine = tokens.authenticate(s, plain=second)
        assert mine is not None
        assert (mine.agent_id, mine.role) == (first.id, "agent")
        live = s.scalar(
            select(func.count()).where(ApiToken.agent_id == first.id, ApiToken.revoked_at.is_(None))
        )
        assert live == 1
