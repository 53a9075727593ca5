#!/usr/bin/env bash
# Runs one fuzz target the way the table in README.md was filled: one job, niced, for
# SECONDS (default 600), on the bulk corpus (fuzz/bulk/, not committed) seeded from fuzz/corpus/.
# Usage: fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags]
set -euo pipefail
cd "$(dirname "$0")"
target=$1
seconds=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "bulk/$target" "corpus/$target"
dict=()
[[ -f "dict/$target.dict" ]] && dict=("-dict=dict/$target.dict")
exec nice -n 10 cargo fuzz run --sanitizer none "$target" "bulk/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" "$@"
