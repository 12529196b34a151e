"""An api process that serves agents does not load the statistics libraries: scipy.stats,
statsmodels, pandas and pyarrow cost it ~160 MB of memory, which 10,000 agents' connections
need (issue 18: under 300 MB a process). They load with the first request that uses them."""

import subprocess
import sys

HEAVY = ("scipy.stats", "statsmodels", "pandas", "pyarrow")


def test_the_app_starts_without_the_statistics_libraries():
    probe = (
        "import sys; from reprofarm_api.app import create_app; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert loaded == "", f"imported at start: {loaded}"
