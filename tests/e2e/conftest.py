from collections.abc import Iterator

import pytest

from tests.e2e.farm import Farm, RedisServer


@pytest.fixture
def farm(request, tmp_path, postgres_url, build_cache) -> Iterator[Farm]:
    """api + worker + beat on Postgres and a private Redis; agents are started by
    tests. Parametrize indirectly with {"lease_s": N} for longer leases."""
    redis = RedisServer(tmp_path)
    redis.start()
    options = getattr(request, "param", {})
    f = Farm(
        root=tmp_path,
        database_url=postgres_url,
        redis=redis,
        shared_builds=build_cache,
        **options,
    )
    f.prepare()
    f.start_api()
    f.start("worker", ["worker", "--concurrency", "2"])
    f.start("beat", ["beat"])
    yield f
    f.stop_all()
    redis.stop()
    for log in sorted(tmp_path.glob("*.log")):
        print(f"===== {log.name}\n{log.read_text(errors='replace')[-3000:]}")
