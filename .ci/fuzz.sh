#!/usr/bin/env bash
# Runs every fuzz target in the repository briefly, so that a regression
# in a parser shows in CI:
#
#   bash .ci/fuzz.sh
#
# Targets are found, not listed: every `func FuzzXxx(f *testing.F)` in a
# *_test.go file is run on its own with
#   go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime $FUZZTIME ./its/package
# (a failure leaves the input in that package's testdata/fuzz/FuzzXxx,
# which then runs with the normal tests). All targets run; the script
# fails if any failed. FUZZTIME (default 3s) and FUZZ_PARALLEL (default 2
# workers) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-3s}"
parallel="${FUZZ_PARALLEL:-2}"

# "dir name" per target, in a stable order.
mapfile -t targets < <(
	git ls-files --cached --others --exclude-standard '*_test.go' |
		xargs grep -HoE '^func Fuzz[A-Za-z0-9_]*\(' |
		sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#; s#^[^/ ]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#. \1#' |
		sort
)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
failed=()
for t in "${targets[@]}"; do
	dir=${t% *}
	name=${t#* }
	t0=$SECONDS
	run() { go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel "$parallel" "./$dir" >"$log" 2>&1; }
	if run; then
		echo "ok    $name ./$dir ($((SECONDS - t0))s)"
	elif grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log" && run; then
		# Go's fuzzing engine can report its own -fuzztime deadline as a
		# failure, with no failing input, on a loaded machine: one rerun.
		echo "ok    $name ./$dir ($((SECONDS - t0))s, rerun after the engine's deadline error)"
	else
		echo "FAIL  $name ./$dir ($((SECONDS - t0))s)"
		sed 's/^/      /' "$log"
		failed+=("$name ./$dir")
	fi
done
echo "fuzz.sh: ${#targets[@]} targets, $((SECONDS - start))s, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
	printf '  failed: %s\n' "${failed[@]}"
	exit 1
fi
