#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: the demo.
# vsockmuxd relays a guest process's stdio; vsockmux-sim plays the guest agent over hybrid vsock
# (Unix sockets), so this runs on any Linux host without VMs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

# The simulator agrees to stdio resume (exactly-once stdio across reconnects) by default;
# --no-resume makes it a guest that only knows the legacy replay.
SIM_ARGS=()

build=$PWD/build
export PATH=$build/cli:$PATH
work=$(mktemp -d /tmp/vsockmux-demo.XXXXXX)
export VSOCKMUX_SOCKET=$work/vsockmux.sock
pids=()

cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -t 1 ]; then bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'; else bold= dim= off=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
# Shows a command the way you would type it, then runs it.
run() {
  local a line='$'
  for a in "$@"; do
    case $a in *[[:space:]\;\$\&\>\|]*) line+=" '$a'" ;; *) line+=" $a" ;; esac
  done
  printf '%s%s%s\n' "$dim" "$line" "$off"
  "$@"
}
# Polls a command for up to 30 s (slow machines, sanitizer builds).
await() {
  local what=$1 i; shift
  for i in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: $what did not happen within 30 s; see $work" >&2
  trap - EXIT
  exit 1
}

step "1. start vsockmuxd on a private socket and state dir"
"$build/daemon/vsockmuxd" --socket "$VSOCKMUX_SOCKET" --state-dir "$work/state" --hvsock-root "$work" --log-level warn \
  2>"$work/vsockmuxd.log" &
pids+=($!)
await "vsockmuxd listening" vsockmux stats
echo "vsockmuxd pid ${pids[0]}, socket $VSOCKMUX_SOCKET"

step "2. add VM 'demo'; the guest simulator dials its bridge over hybrid vsock"
run vsockmux vm add demo --hvsock "$work/demo.vsock"
"$build/sim/vsockmux-sim" --hvsock "$work/demo.vsock" --stats "$work/sim.stats" "${SIM_ARGS[@]}" --log-level error &
pids+=($!)
await "the guest's bridge connecting" sh -c 'vsockmux vm ls --json | grep -q "\"bridge\": \"connected\""'
run vsockmux vm ls

step "3. run a process in the guest: its stdout, stderr and exit code come back"
set +e
run vsockmux exec demo -- sh -c 'echo "hello from the guest"; echo "this line is stderr" >&2; uname -s; exit 3' \
  </dev/null
code=$?
set -e
echo "exit code: $code"

step "4. what the daemon knows: the process (ports, bytes per stream, exit) and its totals"
run vsockmux ps demo
run vsockmux stats

step "5. save VM 'demo' from this daemon while a process keeps writing, restore it in a second one"
"$build/daemon/vsockmuxd" --socket "$work/b.sock" --state-dir "$work/state-b" --hvsock-root "$work" --log-level warn \
  2>"$work/vsockmuxd-b.log" &
pids+=($!)
await "the second vsockmuxd listening" vsockmux --socket "$work/b.sock" stats
pid=$(vsockmux exec demo --detach --stdout "$work/before.out" -- \
  sh -c 'i=0; while [ $i -lt 400 ]; do echo "line $i"; i=$((i+1)); sleep 0.005; done; exit 7')
echo "process $pid writes 400 numbered lines to $work/before.out"
await "the first output" test -s "$work/before.out"
run vsockmux save demo --out "$work/demo.state"
run vsockmux --socket "$work/b.sock" restore --in "$work/demo.state" --io "$pid:stdout=$work/after.out"
set +e
run vsockmux --socket "$work/b.sock" wait demo "$pid"
code=$?
set -e
echo "exit code on the second daemon: $code"
before=$(wc -l <"$work/before.out"); after=$(wc -l <"$work/after.out")
echo "first daemon delivered $before lines, the second $after"
if cat "$work/before.out" "$work/after.out" | awk '$2 != NR - 1 { bad = 1 } END { exit bad || NR != 400 }'; then
  echo "lines 0-399 arrived exactly once and in order: no gap, no duplicate"
else
  echo "demo: the output has a gap or a duplicate; see $work" >&2
  trap - EXIT
  exit 1
fi

step "6. upgrade the second vsockmuxd in the middle of a process's output: the VM goes with it live"
pid=$(vsockmux --socket "$work/b.sock" exec demo --detach --stdout "$work/upgrade.out" -- \
  sh -c 'i=0; while [ $i -lt 400 ]; do echo "line $i"; i=$((i+1)); sleep 0.005; done; exit 5')
echo "process $pid writes 400 numbered lines to $work/upgrade.out"
await "100 lines of output" sh -c "[ \$(wc -l <'$work/upgrade.out') -ge 100 ]"
guest_before=$(grep -E '^(bridge_connects|stdio_redials) ' "$work/sim.stats")
out=$(run vsockmux --socket "$work/b.sock" upgrade)
echo "$out"
pids+=("${out##* pid }")
echo "lines delivered when the old daemon handed over: $(wc -l <"$work/upgrade.out")"
set +e
run vsockmux --socket "$work/b.sock" wait demo "$pid"
code=$?
set -e
echo "exit code from the new daemon: $code"
guest_after=$(grep -E '^(bridge_connects|stdio_redials) ' "$work/sim.stats")
if [ "$code" = 5 ] && [ "$guest_before" = "$guest_after" ] &&
  awk '$2 != NR - 1 { bad = 1 } END { exit bad || NR != 400 }' "$work/upgrade.out"; then
  echo "lines 0-399 arrived exactly once and in order through the upgrade; the guest never
  reconnected (its counts, the same before and after the upgrade, are the earlier move's:
  $(echo $guest_after))"
else
  echo "demo: the upgrade lost, repeated or reordered output (or the exit code); see $work" >&2
  trap - EXIT
  exit 1
fi
