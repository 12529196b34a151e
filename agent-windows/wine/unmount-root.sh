#!/usr/bin/env bash
# Stop Wine in the test bed (wineserver -k) and unmount the root. Safe to run
# when nothing is mounted. Exits non-zero if something stays mounted: then do
# not remove the root (its /dev is the host's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=root.sh
source "$here/root.sh"
unmount_root
