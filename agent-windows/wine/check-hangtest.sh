#!/usr/bin/env bash
# The Wine CI step: prepare the Wine root (cached between runs on this
# machine), check hangtest's Windows build under Wine for every Go minor
# (check_hangtest.py), and always stop Wine and unmount, even on failure.
# Fails if a check fails or the root stays mounted. Arguments go to
# check_hangtest.py (--go 1.21,1.27 --duration 2s).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="$HOME/.local/bin:$PATH"
started=$SECONDS

finish() {
  local rc=$?
  "$here/unmount-root.sh" || rc=1
  echo "wine step: $((SECONDS - started)) s (exit $rc)"
  exit "$rc"
}
trap finish EXIT

"$here/prepare-root.sh"
echo "wine root ready after $((SECONDS - started)) s"
uv run --project "$here/../.." python "$here/check_hangtest.py" "$@"
