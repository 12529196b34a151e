# shellcheck shell=bash
# The Wine test bed's Debian trixie root: where it lives, how it is mounted,
# how a command runs in it, how it is unmounted. Sourced by the scripts beside
# it; nothing here runs on its own.
#
# The root's /dev is a bind mount of the host's /dev: removing the root while
# it is mounted would delete the host's device nodes. remove_root refuses to
# run while anything is mounted below the root, and every script unmounts in
# a trap before it could remove anything.

WINE_ROOT="${REPROFARM_WINE_ROOT:-/var/cache/reprofarm/wine-trixie}"
# Bump when the recipe in prepare-root.sh changes: a root with another stamp is rebuilt.
WINE_ROOT_RECIPE="reprofarm-wine-root 1: trixie minbase, wine wine64 (no recommends), wineboot -i"
WINE_ROOT_STAMP=".reprofarm-wine-root-ready"
# Inside the root: Wine's private prefix, and where the scripts put binaries.
WINE_PREFIX_IN_ROOT="/opt/reprofarm/wineprefix"
# shellcheck disable=SC2034  # used by prepare-root.sh
WINE_WORK_IN_ROOT="/work"

root_log() { printf 'wine-root: %s\n' "$*" >&2; }

# mounts_below DIR: mount points at or below DIR, deepest first.
mounts_below() {
  local dir
  dir="$(realpath -m "$1")"
  awk -v d="$dir" '{ if ($5 == d || index($5, d "/") == 1) print $5 }' /proc/self/mountinfo |
    awk '{ print length($0), $0 }' | sort -rn | cut -d' ' -f2-
}

is_mounted() { mountpoint -q "$1"; }

# mount_root [DIR]: proc, the host's /dev (bind), /dev/pts (bind) and a
# private tmpfs on /dev/shm. Each is mounted only if it is not already, so a
# second caller shares the first one's mounts.
mount_root() {
  local r="${1:-$WINE_ROOT}"
  is_mounted "$r/proc" || mount -t proc proc "$r/proc"
  if ! is_mounted "$r/dev"; then
    mount --bind /dev "$r/dev"
    # Never let a mount below the root's /dev reach the host's /dev.
    mount --make-private "$r/dev"
  fi
  is_mounted "$r/dev/pts" || mount --bind /dev/pts "$r/dev/pts"
  # Wine keeps its shared memory in /dev/shm; the root gets its own.
  is_mounted "$r/dev/shm" || mount -t tmpfs -o mode=1777,size=1g shm "$r/dev/shm"
  # A runtime directory, so Wine's display drivers find none quietly.
  install -d -m 700 "$r/run/wine-xdg"
}

# stop_wine [DIR]: end the root's wineserver and the Wine processes it serves,
# then any other process still running inside the root (all were started by
# these scripts: nothing else uses this root).
stop_wine() {
  local r="${1:-$WINE_ROOT}" pid
  if [ -d "$r/proc/self" ] && chroot "$r" test -x /usr/bin/wineserver 2>/dev/null; then
    chroot "$r" env WINEPREFIX="$WINE_PREFIX_IN_ROOT" wineserver -k >/dev/null 2>&1 || true
    timeout 20 chroot "$r" env WINEPREFIX="$WINE_PREFIX_IN_ROOT" wineserver -w >/dev/null 2>&1 || true
  fi
  local real
  real="$(realpath -m "$r")"
  for pid in $(processes_in_root "$real"); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# processes_in_root DIR: pids whose root directory is DIR.
processes_in_root() {
  local link pid
  for link in /proc/[0-9]*/root; do
    pid="${link#/proc/}"
    pid="${pid%/root}"
    [ "$(readlink "$link" 2>/dev/null)" = "$1" ] && echo "$pid"
  done
  return 0
}

# unmount_root [DIR]: stop Wine, then unmount everything below the root,
# deepest first. Fails (non-zero) if something stays mounted.
unmount_root() {
  local r="${1:-$WINE_ROOT}" m
  [ -d "$r" ] || return 0
  stop_wine "$r"
  for m in $(mounts_below "$r"); do
    umount "$m" 2>/dev/null || { sleep 1; umount "$m"; } || root_log "could not unmount $m"
  done
  if [ -n "$(mounts_below "$r")" ]; then
    root_log "still mounted below $r: $(mounts_below "$r" | tr '\n' ' ')"
    return 1
  fi
}

# remove_root DIR: delete a root, only once nothing is mounted below it.
remove_root() {
  local r="$1"
  [ -e "$r" ] || return 0
  unmount_root "$r" || { root_log "not removing $r: it is still mounted"; return 1; }
  rm -rf --one-file-system "$r"
}

root_ready() {
  local r="${1:-$WINE_ROOT}"
  [ -f "$r/$WINE_ROOT_STAMP" ] && [ "$(cat "$r/$WINE_ROOT_STAMP")" = "$WINE_ROOT_RECIPE" ]
}

# in_root CMD...: run a command inside the mounted root with Wine's
# environment: no debug output (override with WINEDEBUG), the private prefix,
# no Mono/Gecko install prompts, no display.
in_root() {
  chroot "$WINE_ROOT" env -i "${wine_env[@]}" "$@"
}

wine_env=(
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
  HOME=/root
  LANG=C.UTF-8
  XDG_RUNTIME_DIR=/run/wine-xdg
  WINEDEBUG="${WINEDEBUG:--all}"
  WINEPREFIX="$WINE_PREFIX_IN_ROOT"
  "WINEDLLOVERRIDES=mscoree=;mshtml=;winemenubuilder.exe=d"
)
