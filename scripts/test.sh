#!/usr/bin/env bash
# Installs what is missing, then builds and runs every suite twice: once with -Werror,
# once under AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

run_suite() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" --werror "$@"
  else
    meson configure "$dir" --werror "$@" >/dev/null
  fi
  ninja -C "$dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2
}

echo "== build with -Wall -Wextra -Werror"
run_suite build-ci
echo "== build with -fsanitize=address,undefined"
run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false
