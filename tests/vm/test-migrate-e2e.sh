#!/usr/bin/env bash
# tests/vm/test-migrate-e2e.sh DAEMON CLI SIM VMHELPER
#
# Migrate over the control API end to end, run by with-libvirtd.sh (VM_TEST_* name two session
# libvirtd and the test guest): the source vsockmuxd runs a real libvirt live migration of a TCG
# domain in its vsockmux-vmhelper and, in the same run, moves the relay state of a VM to the
# other vsockmuxd while the guest simulator's process keeps writing. `vsockmux migrate` is only
# the API's client: it sends Migrate, prints the Events, and runs the hooks.
# The simulator plays the guest's vsock side, so it follows the domain through the migration's
# hooks: it is stopped when the source pauses (--on-suspended: a paused guest neither writes nor
# notices the source daemon letting go), and continued when the destination domain resumes
# (--on-resumed). The source daemon's release of every connection is the transport reset the guest
# sees. Once the guest redialled the destination and output flows there, a second reset of its
# stdio connections (SIGUSR2) must cost nothing either: the destination keeps stdio ports listening
# with V4 (tests/daemon/test-reconnect.c covers it deterministically). A full second reset
# (SIGUSR1, the bridge too) is not repeated here: test-reconnect's full-reset tests cover it, the
# bridge included, and nothing about it depends on libvirt.
#   1. invalid options are refused with the converter's message before anything happens;
#   2. --io naming a pid the VM does not hold is refused by name before anything happens; then a
#      migration moves the domain and the relay state: zero bytes lost for a writer named by exec
#      id and one named by pid, the exit codes arrive on the destination, the source keeps
#      nothing, `vsockmux events` saw it;
#   3. an interrupted migration (SIGTERM during pre-copy) rolls back: the domain runs on at the
#      source, the source daemon keeps relaying, the destination holds nothing;
#   4. the helper killed (SIGKILL) mid-migration: the daemon serves on, a rollback helper aborts
#      libvirt's job, and everything is back on the source as in 3.
# The hooks run in the CLI when it sees the daemon's "suspended" and "destination-resumed"
# events: the simulator may notice the source letting go before its STOP arrives, which a real
# guest would not; it redials, and nothing is lost either way.
set -u

daemon=$1 cli=$2 sim=$3 helper=$4
# vsockmuxd cannot start without io_uring: a skip, not a failure.
"$(dirname "$0")/../io_uring_available.py" || exit $?
: "${VM_TEST_SRC_URI:?run me through with-libvirtd.sh}" "${VM_TEST_DST_URI:?}" "${VM_TEST_KERNEL:?}"

# Generous bounds for a loaded 2-core box under ASan; nothing here asserts speed.
WAIT_S=120

dir=$(mktemp -d /tmp/vsockmux-mig.XXXXXX) || exit 1
chmod 0755 "$dir"
pids=()

cleanup() {
        local rc=$?
        trap - EXIT
        for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
        if [ "$rc" -ne 0 ]; then
                for f in "$dir"/*.log "$dir"/*.jsonl; do
                        [ -f "$f" ] || continue
                        echo "---- $f (tail)" >&2
                        tail -n 25 "$f" >&2
                done
        fi
        rm -rf "$dir"
        exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# Polls a command until it succeeds, up to WAIT_S.
wait_for() {
        local what=$1
        shift
        for _ in $(seq $((WAIT_S * 20))); do
                "$@" && return 0
                sleep 0.05
        done
        fail "timed out waiting for $what"
}

vsa() { "$cli" --socket "$dir/a.sock" "$@"; }
vsb() { "$cli" --socket "$dir/b.sock" "$@"; }
virsh_src() { timeout 30 virsh -q -c "$VM_TEST_SRC_URI" "$@"; }
virsh_dst() { timeout 30 virsh -q -c "$VM_TEST_DST_URI" "$@"; }

start_daemon() {
        mkdir -p "$dir/$1"
        "$daemon" --socket "$dir/$1.sock" --state-dir "$dir/$1" --hvsock-root "$dir" --vm-helper "$helper" \
                >"$dir/daemon-$1.log" 2>&1 &
        pids+=($!)
        eval "daemon_$1=$!"
        wait_for "vsockmuxd $1" test -S "$dir/$1.sock"
}

# A transient 64 MiB guest on the source: it halts (dirty 0) or keeps rewriting N MiB.
domain_start() {
        cat >"$dir/$1.xml" <<EOF
<domain type='qemu'><name>$1</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>$VM_TEST_KERNEL</kernel><cmdline>dirty=$2</cmdline></os>
<on_poweroff>destroy</on_poweroff>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><controller type='usb' model='none'/>
<memballoon model='none'/></devices></domain>
EOF
        virsh_src create "$dir/$1.xml" >/dev/null || fail "cannot start domain $1"
}

bridge_is() { "$cli" --socket "$1" vm ls --json | tr -d ' \n' | grep -q "\"name\":\"$2\"[^}]*\"bridge\":\"$3\""; }
has_vm() { "$cli" --socket "$1" vm ls --json | tr -d ' \n' | grep -q "\"name\":\"$2\""; }
size_at_least() { [ -f "$1" ] && [ "$(stat -c %s "$1")" -ge "$2" ]; }

# A VM backed by the simulator, connected to daemon a. Prints the simulator's pid; a caller that
# runs it in $(...) must add that pid to pids itself (the subshell's pids+= is lost).
vm_with_sim() {
        vsa vm add "$1" --hvsock "$dir/$1.vsock" >/dev/null || fail "vm add $1"
        "$sim" --hvsock "$dir/$1.vsock" >"$dir/sim-$1.log" 2>&1 &
        pids+=($!)
        wait_for "the $1 bridge" bridge_is "$dir/a.sock" "$1" connected
        echo "$!"
}

# Writes numbered lines until $2 exists, then "end N" and exit 7.
writer() {
        echo "i=0; while [ ! -e $2 ]; do echo line \$i; i=\$((i+1)); [ \$((i % 100)) -eq 0 ] && sleep 0.02; done; echo end \$i; exit 7"
}

# Every line "line 0".."line N-1" exactly once and in order, then "end N".
check_lines() {
        awk 'BEGIN { n = 0 }
             $1 == "line" { if ($2 != n) { printf "line %d where line %d was due\n", $2, n; bad = 1; exit 1 } n++; next }
             $1 == "end" { if ($2 != n) { printf "end %d after %d lines\n", $2, n; bad = 1; exit 1 } ended = 1; next }
             { printf "unexpected: %s\n", $0; bad = 1; exit 1 }
             END { if (!bad && !ended) { print "no end line"; exit 1 } if (!bad) printf "%d lines, in order, none twice\n", n }' "$@"
}

start_daemon a
start_daemon b

# ---- 1. invalid options: refused, and nothing happened ------------------------------------------
step "invalid options are refused before anything happens"
domain_start vmig-opts 0
vm_with_sim opts >/dev/null
for bad in "--downtime 3000000|max_downtime_ms" "--auto-converge 300,5|auto_converge.initial_percent" \
           "--compression mt --mt-level 12|level" "--parallel 256|parallel_connections" \
           "--bandwidth -1|bandwidth_mib_per_s" "--transport unix --migrate-uri tcp://127.0.0.1|migrate_uri"; do
        # shellcheck disable=SC2086
        vsa migrate opts --from "$VM_TEST_SRC_URI" --to "$VM_TEST_DST_URI" --domain vmig-opts \
                --dest-socket "$dir/b.sock" ${bad%%|*} 2>"$dir/err" >/dev/null
        rc=$?
        # The daemon judges the values: its refusal (exit 1), not a usage error (2).
        [ "$rc" -eq 1 ] || fail "'${bad%%|*}' exited $rc, not 1"
        grep -q "see vsockmux --help" "$dir/err" && fail "'${bad%%|*}': the daemon's refusal points at --help"
        grep -q "${bad#*|}" "$dir/err" || fail "'${bad%%|*}' did not name ${bad#*|}: $(cat "$dir/err")"
done
cat "$dir/err"
vsa migrate opts --to "$VM_TEST_DST_URI" --domain vmig-opts --dest-socket "$dir/b.sock" --transport udp 2>"$dir/err"
[ $? -eq 2 ] || fail "--transport udp is not a usage error"
virsh_src domjobinfo vmig-opts | grep -q "Job type: *None" || fail "a refused migration started a libvirt job"
[ "$(virsh_src domstate vmig-opts)" = running ] || fail "the domain is not running"
bridge_is "$dir/a.sock" opts connected || fail "the VM left the connected state"
has_vm "$dir/b.sock" opts && fail "the destination daemon got the VM"
virsh_src destroy vmig-opts >/dev/null

# ---- 2. the migration ---------------------------------------------------------------------------
step "migrate: the domain and the relay state move, zero bytes lost, the exit code arrives"
domain_start vmig-e2e 0
simpid=$(vm_with_sim demo)
pids+=("$simpid")
vsa events --vm demo --json >"$dir/events.jsonl" 2>"$dir/events.log" &
pids+=($!)
# Named by an exec id on the destination's --io (all digits, as an id may be: exec= says it is one),
# which the source daemon passes on to the destination's Restore.
pid=$(vsa exec demo --detach --id 4242 --stdout "$dir/out-a" -- sh -c "$(writer demo "$dir/stop")") || fail "exec"
# And one named by its pid alone ("PID:"), the newest (only) entry of that pid.
pidp=$(vsa exec demo --detach --stdout "$dir/outp-a" -- sh -c "$(writer demo "$dir/stop")") || fail "exec"
wait_for "output on the source" size_at_least "$dir/out-a" 2000
wait_for "output on the source" size_at_least "$dir/outp-a" 2000

# A pid the VM does not hold: refused by name before the source pauses, nothing moved.
nopid=999999
if [ "$nopid" = "$pid" ] || [ "$nopid" = "$pidp" ]; then fail "the guest gave pid $nopid to a writer"; fi
vsa migrate demo --from "$VM_TEST_SRC_URI" --to "$VM_TEST_DST_URI" --domain vmig-e2e --dest-socket "$dir/b.sock" \
        --io "exec=4242:stdout=$dir/out-b" --io "$nopid:stdout=$dir/outp-b" --on-suspended "kill -STOP $simpid" \
        --on-resumed "kill -CONT $simpid" --json >"$dir/nopid.jsonl" 2>"$dir/nopid.log"
rc=$?
cat "$dir/nopid.log"
[ "$rc" -eq 1 ] || fail "--io naming pid $nopid exited $rc, not 1"
grep -q "pid $nopid, which" "$dir/nopid.log" || fail "the refusal does not name pid $nopid"
grep -q '"event":"saved"' "$dir/nopid.jsonl" && fail "the relay state was saved for a refused --io"
virsh_src domjobinfo vmig-e2e | grep -q "Job type: *None" || fail "a refused migration started a libvirt job"
[ "$(virsh_src domstate vmig-e2e)" = running ] || fail "the domain is not running on the source"
virsh_dst domstate vmig-e2e >/dev/null 2>&1 && fail "the domain exists on the destination"
bridge_is "$dir/a.sock" demo connected || fail "the VM left the connected state"
has_vm "$dir/b.sock" demo && fail "the destination daemon got the VM"
[ -e "$dir/out-b" ] || [ -e "$dir/outp-b" ] && fail "a refused migration opened a destination endpoint"
for f in out-a outp-a; do
        size=$(stat -c %s "$dir/$f")
        wait_for "$f after the refusal" size_at_least "$dir/$f" $((size + 1))
done

vsa migrate demo --from "$VM_TEST_SRC_URI" --to "$VM_TEST_DST_URI" --domain vmig-e2e --dest-socket "$dir/b.sock" \
        --io "exec=4242:stdout=$dir/out-b" --io "$pidp:stdout=$dir/outp-b" --on-suspended "kill -STOP $simpid" \
        --on-resumed "kill -CONT $simpid" \
        --json >"$dir/migrate.jsonl" 2>"$dir/migrate.log"
rc=$?
[ "$rc" -eq 0 ] || fail "migrate exited $rc: $(cat "$dir/migrate.log")"
for ev in started progress saved restored destination-resumed summary; do
        grep -q "^{\"event\":\"$ev\"" "$dir/migrate.jsonl" || fail "no $ev line in the --json output"
done
# Every line of --json is one object; the phases come in the order that loses nothing.
jq -e . "$dir/migrate.jsonl" >/dev/null 2>&1 || ! command -v jq >/dev/null || fail "--json output is not JSON lines"
order=$(grep -o '"event":"[a-z-]*"' "$dir/migrate.jsonl" | cut -d'"' -f4 | grep -v -e progress -e iteration | tr '\n' ' ')
[ "$order" = "started saved restored destination-resumed summary " ] || fail "phases out of order: $order"
grep '"event":"summary"' "$dir/migrate.jsonl"
grep -q '"stdio_blackout_ms":[0-9]' "$dir/migrate.jsonl" || fail "the blackout was not measured"

[ "$(virsh_dst domstate vmig-e2e)" = running ] || fail "the domain is not running on the destination"
virsh_src domstate vmig-e2e >/dev/null 2>&1 && fail "the domain is still on the source"
has_vm "$dir/a.sock" demo && fail "the source daemon still holds the VM"
# The second reset, after the guest's stdout resumed on the destination and bytes flowed there.
resumed() { [ "$(grep -c "pid $1 stdout: resuming at byte" "$dir/sim-demo.log")" -ge "$2" ]; }
for p in "$pid" "$pidp"; do wait_for "pid $p's stdout resumed on the destination" resumed "$p" 1; done
for f in out-b outp-b; do
        wait_for "output on the destination" size_at_least "$dir/$f" 1
        size=$(stat -c %s "$dir/$f")
        wait_for "$f after the resume" size_at_least "$dir/$f" $((size + 2000))
done
kill -USR2 "$simpid"
for p in "$pid" "$pidp"; do wait_for "pid $p's stdout resumed after the second reset" resumed "$p" 2; done
for f in out-b outp-b; do
        size=$(stat -c %s "$dir/$f")
        wait_for "$f after the second reset" size_at_least "$dir/$f" $((size + 2000))
done
touch "$dir/stop"
# wait ends with the process's own exit code
for p in "$pid" "$pidp"; do
        code=0; out=$(vsb wait demo "$p") || code=$?
        [ "$code" = 7 ] || fail "wait on the destination for pid $p exited $code, not the process's 7"
        [ "$out" = "exited 7" ] || fail "pid $p's exit came back as '$out'"
done
for f in out outp; do
        cat "$dir/$f-a" "$dir/$f-b" >"$dir/$f-all"
        check_lines "$dir/$f-all" || fail "$f: output lost or duplicated across the migration"
        echo "$f bytes: $(stat -c %s "$dir/$f-a") on the source, $(stat -c %s "$dir/$f-b") on the destination"
done
for kind in migration-started migration-completed; do
        wait_for "a $kind event" grep -q "\"kind\":\"$kind\"" "$dir/events.jsonl"
done
virsh_dst destroy vmig-e2e >/dev/null

# ---- 3. abort: SIGTERM during pre-copy rolls everything back ------------------------------------
step "an interrupted migration rolls back: the domain and the relay stay on the source"
domain_start vmig-abort 8
vm_with_sim demo2 >/dev/null
pid2=$(vsa exec demo2 --detach --stdout "$dir/out2" -- sh -c "$(writer demo2 "$dir/stop2")") || fail "exec"
wait_for "output on the source" size_at_least "$dir/out2" 2000
# A guest rewriting 8 MiB never converges at 1 MiB/s: the migration is in pre-copy when we stop it.
# The CLI itself, not a shell function's subshell, must get the signal.
"$cli" --socket "$dir/a.sock" migrate demo2 --from "$VM_TEST_SRC_URI" --to "$VM_TEST_DST_URI" --domain vmig-abort \
        --dest-socket "$dir/b.sock" --bandwidth 1 --json >"$dir/abort.jsonl" 2>"$dir/abort.log" &
mig=$!
wait_for "pre-copy data moving" grep -q '"event":"progress".*"data_processed":[1-9]' "$dir/abort.jsonl"
kill -TERM "$mig"
wait "$mig"
rc=$?
[ "$rc" -eq 1 ] || fail "an interrupted migrate exited $rc, not 1"
grep -q '"event":"failed".*"rolled_back":true' "$dir/abort.jsonl" || fail "no rolled-back failure line"
grep -q '"event":"saved"' "$dir/abort.jsonl" && fail "the relay state was saved before the source paused"
cat "$dir/abort.log"
[ "$(virsh_src domstate vmig-abort)" = running ] || fail "the domain is not running on the source"
virsh_dst domstate vmig-abort >/dev/null 2>&1 && fail "the domain exists on the destination"
bridge_is "$dir/a.sock" demo2 connected || fail "the source daemon does not relay demo2 as before"
has_vm "$dir/b.sock" demo2 && fail "the destination daemon holds demo2"
size=$(stat -c %s "$dir/out2")
wait_for "output after the rollback" size_at_least "$dir/out2" $((size + 1))
touch "$dir/stop2"
code=0; out=$(vsa wait demo2 "$pid2") || code=$?
[ "$code" = 7 ] || fail "wait on the source exited $code, not the process's 7"
[ "$out" = "exited 7" ] || fail "the exit came back as '$out'"
check_lines "$dir/out2" || fail "output lost or duplicated across the aborted migration"
virsh_src destroy vmig-abort >/dev/null

# ---- 4. the helper killed mid-migration: rolled back, the daemon serves on ----------------------
step "the helper killed (SIGKILL) during pre-copy: rolled back, the daemon unharmed"
domain_start vmig-kill 8
vm_with_sim demo3 >/dev/null
pid3=$(vsa exec demo3 --detach --stdout "$dir/out3" -- sh -c "$(writer demo3 "$dir/stop3")") || fail "exec"
wait_for "output on the source" size_at_least "$dir/out3" 2000
"$cli" --socket "$dir/a.sock" migrate demo3 --from "$VM_TEST_SRC_URI" --to "$VM_TEST_DST_URI" --domain vmig-kill \
        --dest-socket "$dir/b.sock" --bandwidth 1 --json >"$dir/kill.jsonl" 2>"$dir/kill.log" &
mig=$!
wait_for "pre-copy data moving" grep -q '"event":"progress".*"data_processed":[1-9]' "$dir/kill.jsonl"
# The daemon's one child is the helper of this migration.
# shellcheck disable=SC2154
helper_pid=$(pgrep -P "$daemon_a") || fail "no helper process under vsockmuxd $daemon_a"
[ "$(wc -w <<<"$helper_pid")" -eq 1 ] || fail "more than one child of vsockmuxd: $helper_pid"
grep -q vsockmux-vmhel "/proc/$helper_pid/comm" || fail "vsockmuxd's child is $(cat "/proc/$helper_pid/comm")"
kill -KILL "$helper_pid"
wait "$mig"
rc=$?
cat "$dir/kill.log"
[ "$rc" -eq 1 ] || fail "migrate with its helper killed exited $rc, not 1"
grep -q '"event":"failed".*killed by signal 9.*"rolled_back":true' "$dir/kill.jsonl" ||
        fail "no rolled-back failure naming the killed helper"
[ "$(virsh_src domstate vmig-kill)" = running ] || fail "the domain is not running on the source"
virsh_src domjobinfo vmig-kill | grep -q "Job type: *None" || fail "libvirt's migration job is still running"
virsh_dst domstate vmig-kill >/dev/null 2>&1 && fail "the domain exists on the destination"
bridge_is "$dir/a.sock" demo3 connected || fail "the source daemon does not relay demo3 as before"
has_vm "$dir/b.sock" demo3 && fail "the destination daemon holds demo3"
no_helper() { ! pgrep -P "$daemon_a" >/dev/null; }
wait_for "the rollback helper to exit" no_helper
size=$(stat -c %s "$dir/out3")
wait_for "output after the rollback" size_at_least "$dir/out3" $((size + 1))
touch "$dir/stop3"
code=0; out=$(vsa wait demo3 "$pid3") || code=$?
[ "$code" = 7 ] || fail "wait on the source exited $code, not the process's 7"
check_lines "$dir/out3" || fail "output lost or duplicated across the killed migration"
virsh_src destroy vmig-kill >/dev/null
echo "PASS"
