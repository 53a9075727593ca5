#!/usr/bin/env bash
# Picks a small seed set for TARGET from its bulk corpus and adds it to corpus/TARGET/:
# an edge-only merge (-use_counters=0) of corpus/ and bulk/, then a greedy cover of those
# edges, at most N inputs (default 20). Prints how many edges the picks reach.
# Usage: fuzz/seeds.sh TARGET [N]     (after `cargo fuzz build --sanitizer none TARGET`)
set -euo pipefail
cd "$(dirname "$0")"
target=$1
limit=${2:-20}
bin=target/x86_64-unknown-linux-gnu/release/$target
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/merged" "corpus/$target"
nice -n 10 "$bin" -merge=1 -use_counters=0 "$work/merged" "corpus/$target" "bulk/$target" \
    >"$work/merge.log" 2>&1
# The edges of each input alone (a merge control file lists only what is new, so one per input).
for input in "$work"/merged/*; do
    rm -rf "$work/one" "$work/out" "$work/ctl"
    mkdir -p "$work/one" "$work/out"
    cp "$input" "$work/one/"
    nice -n 10 "$bin" -merge=1 -use_counters=0 -merge_control_file="$work/ctl" \
        "$work/out" "$work/one" >/dev/null 2>&1
    printf '%s %s\n' "$input" "$(grep '^COV' "$work/ctl" | cut -d' ' -f3-)"
done >"$work/edges"
python3 - "$work/edges" "corpus/$target" "$limit" <<'PY'
import os, shutil, sys
edges_file, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
cov = {}
for line in open(edges_file):
    path, *edges = line.split()
    cov[path] = set(edges)
have, picks = set(), []
while len(picks) < limit and cov:
    best = max(cov, key=lambda p: (len(cov[p] - have), -os.path.getsize(p)))
    if not cov[best] - have:
        break
    have |= cov.pop(best)
    picks.append(best)
existing = {open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)}
added = 0
for path in picks:
    if open(path, 'rb').read() not in existing:
        shutil.copy(path, os.path.join(out, 'cmin-' + os.path.basename(path)[:8]))
        added += 1
total = set().union(*cov.values(), have)
print(f"{len(picks)} inputs reach {len(have)} of {len(total)} edges; {added} new in {out}")
PY
