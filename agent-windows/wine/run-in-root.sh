#!/usr/bin/env bash
# Run a command inside the Wine test bed, mounting the root first if it is
# not mounted. The mounts stay for the next command; unmount-root.sh ends
# them. Example: run-in-root.sh wine /work/hangtest.exe -scenario control-deadlock
#
# Inside: WINEDEBUG=-all (override with WINEDEBUG), WINEPREFIX is the root's
# private prefix, the working directory is /.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=root.sh
source "$here/root.sh"
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
root_ready "$WINE_ROOT" || { root_log "$WINE_ROOT is not prepared: run prepare-root.sh first"; exit 1; }
mount_root "$WINE_ROOT"
# exec: a caller that kills this script (a timeout) kills the command itself.
exec chroot "$WINE_ROOT" env -i "${wine_env[@]}" "$@"
