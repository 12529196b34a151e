#!/usr/bin/env bash
# Make the Wine test bed: a minimal Debian trixie root with Wine and a
# booted private prefix, at ${REPROFARM_WINE_ROOT:-/var/cache/reprofarm/wine-trixie}.
#
# Safe to rerun: a finished root (its stamp names this recipe) is kept and
# the script returns at once; an unfinished one is unmounted and built again.
# On failure everything it mounted is unmounted and the partial root removed.
# Two runs at once wait for each other (flock). Needs root. Leaves the root
# unmounted; run-in-root.sh mounts it, unmount-root.sh ends it.
#
#   REPROFARM_WINE_ROOT    where the root lives
#   REPROFARM_WINE_MIRROR  Debian mirror (default: the host's, from its apt sources)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=root.sh
source "$here/root.sh"

# host_mirror [APT_DIR]: the first Debian archive URI of the host's apt
# sources (default /etc/apt) that serves a release suite (not -security),
# from one-line .list files and deb822 .sources files alike.
host_mirror() {
  local apt="${1:-/etc/apt}" f
  for f in "$apt/sources.list" "$apt"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           if ($(i + 1) !~ /-security$/ && $i ~ /debian/) { print $i; exit }
         }' "$f"
  done
  for f in "$apt"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
         {
           types = ""; uris = ""; suites = ""
           for (j = 1; j <= NF; j++) {
             if ($j ~ /^Types:/) types = $j
             if ($j ~ /^URIs:/) uris = $j
             if ($j ~ /^Suites:/) suites = $j
           }
           if (types ~ /[ \t]deb([ \t]|$)/ && suites !~ /-security/ && uris ~ /debian/) {
             sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/); print u[1]; exit
           }
         }' "$f"
  done
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return 0
  root_log "installing debootstrap on the host"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
}

build_root() {
  local r="$1" mirror="$2" t0=$SECONDS
  root_log "debootstrap trixie (minbase) from $mirror into $r"
  debootstrap --variant=minbase trixie "$r" "$mirror" >"$r.debootstrap.log" 2>&1 ||
    { tail -n 20 "$r.debootstrap.log" >&2; return 1; }
  rm -f "$r.debootstrap.log"
  # No services start inside the root; apt needs the host's resolver.
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  mount_root "$r"
  root_log "installing wine and wine64 (no recommends) inside the root ($((SECONDS - t0)) s so far)"
  chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$r" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null
  chroot "$r" apt-get clean
  # /usr/bin/wine is an absolute symlink into the root's /etc/alternatives:
  # it only resolves from inside the root.
  chroot "$r" test -x /usr/bin/wine || { root_log "no /usr/bin/wine in the root"; return 1; }
  mkdir -p "$r$WINE_PREFIX_IN_ROOT" "$r$WINE_WORK_IN_ROOT"
  root_log "wineboot -i (private prefix $WINE_PREFIX_IN_ROOT) ($((SECONDS - t0)) s so far)"
  WINE_ROOT="$r" in_root wineboot -i
  WINE_ROOT="$r" in_root wineserver -w
  unmount_root "$r"
  printf '%s\n' "$WINE_ROOT_RECIPE" >"$r/$WINE_ROOT_STAMP"
}

main() {
  if [ "$(id -u)" -ne 0 ]; then
    root_log "needs root (debootstrap, mount, chroot)"
    exit 1
  fi
  mkdir -p "$(dirname "$WINE_ROOT")"
  exec 9>"$WINE_ROOT.lock"
  flock 9
  if root_ready "$WINE_ROOT"; then
    root_log "ready (cached): $WINE_ROOT"
    return 0
  fi
  local started=$SECONDS mirror
  ensure_debootstrap
  mirror="${REPROFARM_WINE_MIRROR:-$(host_mirror /etc/apt | head -n 1)}"
  [ -n "$mirror" ] || { root_log "no Debian mirror in the host's apt sources; set REPROFARM_WINE_MIRROR"; exit 1; }
  # A root without the current stamp is unfinished or from an older recipe.
  remove_root "$WINE_ROOT"
  trap 'root_log "failed: cleaning up"; remove_root "$WINE_ROOT" && rm -f "$WINE_ROOT.debootstrap.log"' EXIT
  build_root "$WINE_ROOT" "$mirror"
  trap - EXIT
  root_log "ready in $((SECONDS - started)) s: $WINE_ROOT ($(du -sh --one-file-system "$WINE_ROOT" | cut -f1))"
}

# Sourced (by a test), only the functions are defined.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
