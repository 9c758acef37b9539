#!/bin/sh
# examples/go/run-example.sh BUILD_ROOT SOURCE_ROOT: builds the Go example offline (GOPATH mode on
# Debian's /usr/share/gocode: containerd/ttrpc 1.1.1, golang/protobuf; stubs generated here by
# protoc-gen-go from proto/control.proto, never committed) and runs it against vsockmuxd with the
# simulator as the guest. Skips (77) only when Go or its packages are not installed.
set -eu

build=$1 src=$2
gocode=/usr/share/gocode

for tool in go protoc protoc-gen-go; do
        command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh installs it)"; exit 77; }
done
[ -f "$gocode/src/github.com/containerd/ttrpc/client.go" ] ||
        { echo "SKIP: golang-github-containerd-ttrpc-dev is not installed"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vsockmux-go.XXXXXX")
daemon_pid= sim_pid=
cleanup() {
        for p in $sim_pid $daemon_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
        [ -n "${VSOCKMUX_GO_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
        echo "FAIL: $*" >&2
        [ ! -f "$tmp/daemon.log" ] || { echo "---- vsockmuxd log ----" >&2; cat "$tmp/daemon.log" >&2; }
        exit 1
}

# The module proxy is not reachable and not wanted: GOPATH mode, nothing fetched.
mkdir -p "$tmp/gopath/src/vsockmux.example/controlpb" "$tmp/gopath/src/vsockmux.example/cmd"
protoc --proto_path="$src/proto" --go_out="$tmp/gopath/src/vsockmux.example/controlpb" "$src/proto/control.proto" ||
        fail "protoc-gen-go"
cp "$src/examples/go/main.go" "$tmp/gopath/src/vsockmux.example/cmd/"
# The build cache stays in the build tree: the standard library compiles once, not per run.
(cd "$tmp/gopath" && GO111MODULE=off GOPATH="$tmp/gopath:$gocode" GOCACHE="$build/go-cache" GOENV=off GOFLAGS= GOPROXY=off \
        go build -o "$tmp/example" vsockmux.example/cmd) || fail "go build"

cli() { "$build/cli/vsockmux" --socket "$tmp/d.sock" "$@"; }
"$build/daemon/vsockmuxd" --socket "$tmp/d.sock" --state-dir "$tmp/state" --hvsock-root "$tmp" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
# These waits are not timing assertions: they end on the state, or fail after a generous bound.
i=0
while [ ! -S "$tmp/d.sock" ] && [ $i -lt 1200 ] && kill -0 "$daemon_pid" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
[ -S "$tmp/d.sock" ] || fail "vsockmuxd never listened"
cli vm add gvm --hvsock "$tmp/gvm.vsock" || fail "vm add"
"$build/sim/vsockmux-sim" --hvsock "$tmp/gvm.vsock" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
i=0
until cli vm ls --json | python3 -c '
import json, sys
sys.exit(0 if any(v["name"] == "gvm" and v["bridge"] == "connected" for v in json.load(sys.stdin)) else 1)'; do
        i=$((i + 1))
        [ $i -lt 1200 ] || fail "the simulator's bridge never came up"
        sleep 0.05
done

"$tmp/example" -socket "$tmp/d.sock" -vm gvm -stdout "$tmp/out.log" -- sh -c 'echo hello from go; exit 7' \
        >"$tmp/example.out" 2>&1 || { cat "$tmp/example.out" >&2; fail "the example failed"; }
cat "$tmp/example.out"
pid=$(sed -n 's/^exec: pid \([0-9][0-9]*\)$/\1/p' "$tmp/example.out")
[ -n "$pid" ] || fail "Exec gave no pid"
grep -qx 'wait: EXIT_KIND_EXITED code 7' "$tmp/example.out" || fail "Wait did not report exit code 7"
grep -qx "ps: pid $pid PROCESS_STATE_EXITED stdout_bytes 14" "$tmp/example.out" ||
        fail "Ps did not list pid $pid exited with its 14 stdout bytes"
grep -q '^stats: .*buffer_pool' "$tmp/example.out" || fail "Stats printed no buffer pool"
grep -q '^refused: .*code = NotFound' "$tmp/example.out" || fail "the refused call did not carry NOT_FOUND"
[ "$(cat "$tmp/out.log")" = "hello from go" ] || fail "the process's stdout is '$(cat "$tmp/out.log")'"
echo "ok: the Go client on containerd/ttrpc ran Exec, Wait, Ps and Stats"
