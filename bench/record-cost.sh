#!/bin/bash
# B14: what the record (<state-dir>/vms, daemon/record.c) costs an exec. N `Exec --detach` calls
# (bench-ctl, P in flight) against a fresh vsockmuxd whose VM is answered by bench-guest (fake
# pids, processes that never exit, so the VM's record grows to N processes), once with the record
# and once with --no-record, R times each, alternating. Prints one line per run: wall ms (the
# calls, as bench-ctl measures them) and the daemon's CPU ms over them (utime + stime).
# Usage: bench/record-cost.sh BUILD_DIR [N=1000] [P=8] [R=3]     (TMPDIR: where the state dir goes)
set -eu
B=$(cd "$1" && pwd); N=${2:-1000}; P=${3:-8}; R=${4:-3}
run() {
        local D; D=$(mktemp -d "${TMPDIR:-/tmp}/record-cost.XXXXXX")
        "$B/daemon/vsockmuxd" --socket "$D/ctl.sock" --state-dir "$D/state" --hvsock-root "$D" --log-level warn \
                --max-processes 4096 "$@" > "$D/d.log" 2>&1 &
        local DP=$!
        for _ in $(seq 500); do "$B/cli/vsockmux" --socket "$D/ctl.sock" vm ls > /dev/null 2>&1 && break; sleep 0.02; done
        "$B/cli/vsockmux" --socket "$D/ctl.sock" vm add bench --hvsock "$D/vm.sock"
        "$B/bench/bench-guest" --hvsock "$D/vm.sock" --ports "$D/ports" > "$D/g.log" 2>&1 &
        local GP=$!
        for _ in $(seq 500); do "$B/cli/vsockmux" --socket "$D/ctl.sock" vm ls | grep -q connected && break; sleep 0.02; done
        for _ in $(seq "$N"); do echo "- - - true"; done > "$D/jobs"
        local u0 s0 u1 s1 t0 t1
        read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$DP/stat")
        t0=$(date +%s%N)
        "$B/bench/bench-ctl" exec --socket "$D/ctl.sock" --vm bench --jobs "$D/jobs" --parallel "$P" > "$D/pids" 2> /dev/null
        t1=$(date +%s%N)
        read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$DP/stat")
        echo "${*:---record} execs=$(wc -l < "$D/pids") in_flight=$P wall_ms=$(((t1 - t0) / 1000000))" \
                "daemon_cpu_ms=$(((u1 - u0 + s1 - s0) * 1000 / $(getconf CLK_TCK)))" \
                "record_bytes=$(stat -c %s "$D/state/vms/bench.state" 2> /dev/null || echo 0)"
        kill "$GP"; kill -TERM "$DP"; wait "$DP" 2> /dev/null || true; rm -rf "$D"
}
for _ in $(seq "$R"); do
        run
        run --no-record
done
