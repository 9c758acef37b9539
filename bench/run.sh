#!/bin/sh
# bench/run.sh [--quick] [run.py options]: build the bench programs and run every scenario.
# Needs: meson, ninja, gcc, liburing (the project's build deps), socat and gnuplot (apt).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# Debian's python3 (standard library only), not whatever python3 is first on PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec "$py" "$here/run.py" "$@"
