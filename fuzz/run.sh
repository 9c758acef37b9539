#!/bin/bash
# fuzz/run.sh: builds the libFuzzer targets (clang, ASan+UBSan, every library instrumented) and
# runs each for a given time, in parallel, at low priority.
#
#   fuzz/run.sh SECONDS [TARGET...]     targets: bridge control savestate journal vm-options metrics-addr cli-since (default: all)
#
# The committed corpus fuzz/corpus/<target>/ seeds each run and is never written; new inputs go
# to build-fuzz/corpus/<target>/. A crash leaves build-fuzz/crashes/<target>/crash-* and fails
# the script: minimize it, fix the bug, and commit the input to fuzz/corpus/<target>/ so the
# replay test keeps it fixed. Logs: build-fuzz/logs/<target>.log (last line: runs and coverage).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bridge control libvsockmux savestate journal vm-options metrics-addr cli-since)

if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" "$root" -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C "$build" $(printf 'fuzz/fuzz-%s ' "${targets[@]}") >/dev/null

mkdir -p "$build/logs"
pids=()
for t in "${targets[@]}"; do
	mkdir -p "$build/corpus/$t" "$build/crashes/$t"
	# -rss_limit_mb: the saved-state reader may legitimately allocate up to its 32 MiB cap.
	nice -n 19 "$build/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
		-print_final_stats=1 -artifact_prefix="$build/crashes/$t/" \
		"$build/corpus/$t" "$root/fuzz/corpus/$t" >"$build/logs/$t.log" 2>&1 &
	pids+=($!)
done

rc=0
for i in "${!targets[@]}"; do
	t=${targets[$i]}
	if wait "${pids[$i]}"; then
		status=ok
	else
		status=FAILED
		rc=1
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/logs/$t.log")
	cov=$(grep -o 'cov: [0-9]*' "$build/logs/$t.log" | tail -1)
	echo "fuzz-$t: $status, ${secs}s, ${runs:-?} runs, ${cov:-cov: ?}, corpus $(ls "$build/corpus/$t" | wc -l) new"
done
exit $rc
