#!/bin/bash
# tests/integration/test-io-uring-skip.sh PROBE TEST [ARGS...]: where io_uring is refused (EPERM:
# io_uring_disabled or a seccomp filter; ENOSYS: a kernel without it), the probe that bench-smoke and
# vm-migrate-e2e use, and an integration program, skip (77) instead of failing. strace's fault
# injection stands in for such a kernel, which this machine is not (the name says so: no real
# io_uring-less kernel here). Without the injection the probe must say io_uring is there, or the
# skip would hide every failure.
set -u
probe=$1; shift
fail=0

expect() {
        local want=$1; shift
        "$@" >/dev/null 2>&1
        local got=$?
        if [ "$got" -ne "$want" ]; then
                echo "FAIL: expected exit $want, got $got: $*" >&2
                fail=1
        fi
}

expect 0 "$probe"
# LeakSanitizer cannot run under ptrace; the rest of ASan and UBSan still can.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
for err in EPERM ENOSYS; do
        inject=(strace -f -qq -o /dev/null -e "inject=io_uring_setup:error=$err")
        expect 77 "${inject[@]}" "$probe"
        expect 77 "${inject[@]}" "$@"
done
[ "$fail" -eq 0 ] && echo "ok: the probe and $(basename "$1") skip without io_uring"
exit "$fail"
