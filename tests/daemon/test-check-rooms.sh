#!/bin/sh
# tests/daemon/test-check-rooms.sh: scripts/check-rooms.py fails an upward include, a room's private
# header used outside it, a daemon/ file in no room and a library room that logs, on a copy of daemon/
# and relay/ it gets in a temporary tree.
set -eu
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() {
        python3 "$src/scripts/check-rooms.py" "$tmp"
}
fresh() {
        rm -rf "$tmp/daemon" "$tmp/relay"
        cp -r "$src/daemon" "$tmp/daemon"
        cp -r "$src/relay" "$tmp/relay"
}

fresh
check >/dev/null || { echo "FAIL: the tree as it is should pass"; exit 1; }

fresh
printf '#include "daemon/vm.h"\n' >> "$tmp/daemon/process.c"
out=$(check) && { echo "FAIL: process.c including vm.h passed"; exit 1; }
echo "$out" | grep -q "process.c (process): includes daemon/vm.h of the vm room, not below it" ||
        { echo "FAIL: unexpected report: $out"; exit 1; }

fresh
printf '#include "daemon/process-private.h"\n' >> "$tmp/daemon/vm.c"
out=$(check) && { echo "FAIL: vm.c including process-private.h passed"; exit 1; }
echo "$out" | grep -q "private to the process room" || { echo "FAIL: unexpected report: $out"; exit 1; }

fresh
printf '#include "daemon/process.h"\n' >> "$tmp/daemon/container.c"
check >/dev/null && { echo "FAIL: container.c including process.h (its sibling) passed"; exit 1; }

fresh
printf 'int x;\n' > "$tmp/daemon/stray.c"
out=$(check) && { echo "FAIL: a file in no room passed"; exit 1; }
echo "$out" | grep -q "stray.c: in no room" || { echo "FAIL: unexpected report: $out"; exit 1; }

fresh
printf '#include "util/log.h"\n' >> "$tmp/relay/listener.c"
out=$(check) && { echo "FAIL: relay/listener.c including util/log.h passed"; exit 1; }
echo "$out" | grep -q "relay/listener.c: includes util/log.h" || { echo "FAIL: unexpected report: $out"; exit 1; }

fresh
printf '#include "util/log.h"\n' >> "$tmp/relay/relay-demo.c"
check >/dev/null || { echo "FAIL: the demo program including util/log.h failed"; exit 1; }
echo "ok"
