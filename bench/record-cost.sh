#!/bin/bash
# B14: what the record (<state-dir>/vms, daemon/record.c) costs an exec. N `Exec --detach` calls
# (bench-ctl, P in flight) against a fresh vsockmuxd whose VM is answered by bench-guest (fake
# pids, processes that never exit, so the VM's record grows to N processes), once with the record
# and once with --no-record, R times each, alternating; then the same at an offered load of RATE
# execs/s (the issue's 1,000/s). The state dir is under TMPDIR (a disk: the fsyncs are the point);
# the hybrid-vsock sockets are on tmpfs (SOCKDIR, /dev/shm by default), as under /run in
# production, so their inode churn does not hide the record's cost. Prints one line per run: wall
# ms, exec latency (p50/p99, from bench-ctl), and the daemon's CPU ms over the calls, all threads
# (/proc/PID/task/*/schedstat, nanoseconds), and the record's snapshot and journal sizes at the end.
# Usage: bench/record-cost.sh BUILD_DIR [N=1000] [P=8] [R=3] [RATE=1000]   (MAXP: --max-processes, 4096)
set -eu
B=$(cd "$1" && pwd); N=${2:-1000}; P=${3:-8}; R=${4:-3}; RATE=${5:-1000}
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2> /dev/null | awk '{s += $1} END {printf "%d", s}'; }
run() {
        local rate=$1; shift
        local D H; D=$(mktemp -d "${TMPDIR:-/tmp}/record-cost.XXXXXX"); H=$(mktemp -d "${SOCKDIR:-/dev/shm}/record-cost.XXXXXX")
        "$B/daemon/vsockmuxd" --socket "$D/ctl.sock" --state-dir "$D/state" --hvsock-root "$H" --log-level warn \
                --max-processes ${MAXP:-4096} "$@" > "$D/d.log" 2>&1 &
        local DP=$!
        for _ in $(seq 500); do "$B/cli/vsockmux" --socket "$D/ctl.sock" vm ls > /dev/null 2>&1 && break; sleep 0.02; done
        "$B/cli/vsockmux" --socket "$D/ctl.sock" vm add bench --hvsock "$H/vm.sock"
        "$B/bench/bench-guest" --hvsock "$H/vm.sock" --ports "$D/ports" > "$D/g.log" 2>&1 &
        local GP=$!
        for _ in $(seq 500); do "$B/cli/vsockmux" --socket "$D/ctl.sock" vm ls | grep -q connected && break; sleep 0.02; done
        for _ in $(seq "$N"); do echo "- - - true"; done > "$D/jobs"
        local c0 c1 t0 t1
        c0=$(cpu_ns "$DP")
        t0=$(date +%s%N)
        "$B/bench/bench-ctl" exec --socket "$D/ctl.sock" --vm bench --jobs "$D/jobs" --parallel "$P" --rate "$rate" \
                > "$D/pids" 2> "$D/ctl.err"
        t1=$(date +%s%N)
        c1=$(cpu_ns "$DP")
        echo "${*:---record} rate=${rate:-max} execs=$(wc -l < "$D/pids") in_flight=$P wall_ms=$(((t1 - t0) / 1000000))" \
                "$(sed -n 's/^bench-ctl: exec latency \(.*\)$/latency: \1/p' "$D/ctl.err" | tr -d ,)" \
                "daemon_cpu_ms=$(((c1 - c0) / 1000000))" \
                "record_bytes=$(stat -c %s "$D/state/vms/bench.state" 2> /dev/null || echo 0)" \
                "journal_bytes=$(stat -c %s "$D/state/vms/bench.journal" 2> /dev/null || echo 0)"
        kill "$GP"; kill -TERM "$DP"; wait "$DP" 2> /dev/null || true; rm -rf "$D" "$H"
}
for rate in 0 "$RATE"; do
        for _ in $(seq "$R"); do
                run "$rate"
                run "$rate" --no-record
        done
done
