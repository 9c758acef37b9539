#!/bin/bash
# scripts/check-format.sh [--fix]: every C file in the tree is as .clang-format says (Debian 12's
# clang-format 14: another version formats some lines differently, so prefer that one). --fix
# rewrites them in place. Exit 1 names the files that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then
        echo "SKIP: no clang-format (scripts/setup.sh installs it)"
        exit 77
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        mapfile -t files < <(git ls-files '*.c' '*.h')
else
        mapfile -t files < <(find . -name build -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
if [ "${1:-}" = "--fix" ]; then
        exec "$cf" -i "${files[@]}"
fi
bad=()
for f in "${files[@]}"; do
        "$cf" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ "${#bad[@]}" -gt 0 ]; then
        echo "not formatted as .clang-format says (run scripts/check-format.sh --fix):" >&2
        printf '  %s\n' "${bad[@]}" >&2
        exit 1
fi
echo "ok: ${#files[@]} files formatted"
