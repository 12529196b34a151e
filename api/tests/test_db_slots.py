"""Database slots: fewer requests use the database at once than there are
connections, so a worker thread never waits for a connection that a request
starved of threads holds (the stall bench/agents_load.py found at 2,000 agents)."""

import asyncio
import threading
import time

import anyio.to_thread
import pytest
from reprofarm_api.db_slots import AUTH_SLOTS, BACKGROUND_CONNECTIONS, DatabaseSlots, pool_size


def test_slots_bound_how_many_callers_run_at_once():
    slots = DatabaseSlots(3)
    lock = threading.Lock()
    running = 0
    most = 0

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        await asyncio.gather(*(slots.run(work) for _ in range(12)))

    asyncio.run(main())
    assert most == 3


@pytest.mark.parametrize("api", [{"db_request_slots": 5}], indirect=True)
def test_the_pool_and_the_threads_fit_the_slots(api):
    app = api.client.app
    engine = app.state.sessions.kw["bind"]
    assert app.state.db_slots.request_slots == 5
    assert engine.pool.size() == pool_size(5) == 5 + AUTH_SLOTS + BACKGROUND_CONNECTIONS

    async def tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert api.client.portal.call(tokens) >= pool_size(5)


@pytest.mark.parametrize("api", [{"db_request_slots": 1}], indirect=True)
def test_one_slot_serves_many_concurrent_requests(api):
    """Forty requests at once through one slot: all answered (a request that
    waited out the connection pool's timeout would get a 503)."""
    headers = api.headers(api.admin)
    answers: list[int] = []

    def ask() -> None:
        answers.append(api.client.get("/api/v1/agents", headers=headers).status_code)

    threads = [threading.Thread(target=ask) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [200] * 40
