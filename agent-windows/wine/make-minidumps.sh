#!/usr/bin/env bash
# Minidumps of the farm's own hung process, made under Wine: for each Go
# version, hangtest.exe runs control-deadlock with -on-stall dump-and-wait
# (so it stays alive, deadlocked, after its goroutine dump), then two dumps
# are taken from outside with Wine's dbghelp MiniDumpWriteDump:
#
#   hangtest-<go>-winedbg.mdmp  winedbg --minidump FILE PID (MiniDumpNormal:
#                               threads with contexts and stacks, modules)
#   hangtest-<go>-full.dmp      minidump/ (a Go helper) with the agent's own
#                               dump type: full memory, handles, thread info
#
# Each version's folder also gets the binary, its build manifest, the events,
# the goroutine dump and describe.txt (describe_minidump.py); OUT_DIR gets a
# README.md saying what is what. Needs root (the Wine root); builds with the
# agent's toolchains (uv run reprofarm-agent build).
#
#   make-minidumps.sh OUT_DIR [GO_MINOR...]     (default: 1.21 1.27)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=root.sh
source "$here/root.sh"
export PATH="$HOME/.local/bin:$PATH"

[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [GO_MINOR...]" >&2; exit 2; }
out="$(realpath -m "$1")"
shift
minors=("$@")
[ ${#minors[@]} -gt 0 ] || minors=(1.21 1.27)
work_in_root="/work/minidumps"
started=$SECONDS
hung=()

cleanup() {
  local rc=$? pid
  for pid in "${hung[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$here/unmount-root.sh" || rc=1
  exit "$rc"
}

# json_field FIELD: one field of the JSON object on stdin.
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# await_line FILE WORD SECONDS: wait until a line of FILE contains WORD.
await_line() {
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || { echo "no $2 in $1 after $3 s" >&2; return 1; }
    sleep 0.2
  done
}

# win PATH_IN_ROOT: the path as Wine's Z: drive shows it. Forward slashes:
# winedbg's command parser reads backslashes in quoted names as escapes.
win() { printf 'Z:%s' "$1"; }

dump_version() {
  local minor="$1" manifest exe go work dir wpid hpid
  manifest="$(cd "$repo" && uv run --quiet reprofarm-agent build --go "$minor" --target windows/amd64 --json)"
  exe="$(json_field path <<<"$manifest")"
  go="$(json_field go_version <<<"$manifest")"
  work="$work_in_root/$go"
  dir="$WINE_ROOT$work"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$exe" "$dir/hangtest.exe"
  "$here/run-in-root.sh" wine "$work/hangtest.exe" -scenario control-deadlock -control-chance 1 \
    -workers 2 -iterations 1000 -stall-timeout 1s -on-stall dump-and-wait -dump-dir "$(win "$work")" \
    >"$dir/events.jsonl" 2>"$dir/stderr.txt" &
  hpid=$!
  hung+=("$hpid")
  await_line "$dir/events.jsonl" '"event":"stall"' 60
  wpid="$(head -n 1 "$dir/events.jsonl" | json_field pid)"
  echo "$go: hangtest.exe stalled (Windows pid $wpid); dumping"
  "$here/run-in-root.sh" winedbg --minidump "$(win "$work/hangtest-$go-winedbg.mdmp")" "$wpid" >/dev/null 2>&1
  "$here/run-in-root.sh" wine "$work_in_root/minidump.exe" "$wpid" "$(win "$work/hangtest-$go-full.dmp")"
  # Still alive after both dumps: the dumps did not kill or free it.
  kill -0 "$hpid" || { echo "$go: hangtest.exe died while being dumped" >&2; return 1; }
  kill "$hpid"
  wait "$hpid" || true
  mkdir -p "$out/$go"
  rm -f "$out/$go"/*
  cp "$dir"/hangtest.exe "$dir"/events.jsonl "$dir"/goroutines-*-stall.txt \
    "$dir/hangtest-$go-winedbg.mdmp" "$dir/hangtest-$go-full.dmp" "$out/$go/"
  printf '%s\n' "$manifest" >"$out/$go/manifest.json"
  python3 "$here/describe_minidump.py" "$out/$go"/*.mdmp "$out/$go"/*.dmp >"$out/$go/describe.txt"
  rm -rf "$dir"
}

write_readme() {
  cat >"$out/README.md" <<EOF
# Minidumps of a hung hangtest.exe, made under Wine

Made by \`agent-windows/wine/make-minidumps.sh\` on $(date -u +%Y-%m-%dT%H:%M:%SZ), Wine
$(in_root wine --version 2>/dev/null || echo "(version unknown)") in a Debian trixie root (docs/wine.md).

One folder per Go version. In each: hangtest.exe (windows/amd64, the agent's reproducible
build; manifest.json says how it was built) ran

    hangtest.exe -scenario control-deadlock -control-chance 1 -workers 2 -iterations 1000 \\
      -stall-timeout 1s -on-stall dump-and-wait

so its two workers' goroutines deadlock on two mutexes (lockLeftThenRight, lockRightThenLeft),
hangtest detects the stall after 1 s, writes goroutines-<pid>-1-stall.txt and stays alive.
Then, from outside, with Wine's dbghelp MiniDumpWriteDump:

- hangtest-<go>-winedbg.mdmp: \`winedbg --minidump FILE PID\`, dump type MiniDumpNormal
  (threads with their contexts and stack memory, modules; about 25 KB).
- hangtest-<go>-full.dmp: agent-windows/wine/minidump (Go, dbghelp) with the agent's dump type
  0x1826 (full memory, handle data, unloaded modules, thread info, full memory info).
  Wine's dbghelp writes the full memory (Memory64List) but no handle, thread-info or
  memory-info streams.

events.jsonl is hangtest's stdout (docs/hangtest.md): the start event's pid is the Windows
pid that was dumped. describe.txt lists each dump's streams, modules and threads (RIP, RSP).

What these are not: the CancelIoEx hang. Wine does not reproduce it (docs/wine.md); these are
dumps of the positive control, a plain Go mutex deadlock, to build and test an analyzer on.
Every thread of a deadlocked Go process waits in ntdll (Wine's syscall path); the Go stacks
are in the goroutine dump and in the full dump's memory.
EOF
}

main() {
  mkdir -p "$out"
  "$here/prepare-root.sh"
  trap cleanup EXIT
  mkdir -p "$WINE_ROOT$work_in_root"
  # The dumper: Go standard library only, built with the agent's bundled Go.
  (cd "$here/minidump" && GOOS=windows GOARCH=amd64 CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off \
    uv run --project "$repo" go build -trimpath -o "$WINE_ROOT$work_in_root/minidump.exe" .)
  local minor
  for minor in "${minors[@]}"; do dump_version "$minor"; done
  write_readme
  echo "minidumps in $out ($((SECONDS - started)) s):"
  (cd "$out" && ls -l ./*/*.mdmp ./*/*.dmp)
}

main
