#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec build/relay/vsockmux-relay-demo
