#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in a _test.go file) in the
# repository for FUZZTIME each (default 5s), one target at a time, as Go
# requires. The seed corpus and any crasher found live in each package's
# testdata/fuzz/FuzzXxx. Exits non-zero if any target fails.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-5s}
GO=${GO:-go}

mapfile -t hits < <(grep -rEo --include='*_test.go' --exclude-dir=.git --exclude-dir=.tmp \
	--exclude-dir=testdata '^func Fuzz[A-Za-z0-9_]*\(' . | sort)

if [ ${#hits[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found"
	exit 0
fi

failed=()
passed=0
for hit in "${hits[@]}"; do
	file=${hit%%:*}
	name=${hit#*:func }
	name=${name%(}
	pkg=./$(dirname "${file#./}")
	echo "fuzz: $pkg $name for $FUZZTIME"
	if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"; then
		passed=$((passed + 1))
	else
		failed+=("$pkg $name")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: failing targets (crashers are saved under testdata/fuzz):"
	printf '  %s\n' "${failed[@]}"
fi
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
