#!/usr/bin/env bash
# Compares this checkout with an earlier commit, side by side in one run:
# the benchmarks named below run alternately on BASE and on this tree,
# ROUNDS times, so that a machine's load falls on both alike, and the lines
# of non-generated Go of both are counted.
#
#   bench/compare.sh BASE [ROUNDS]       e.g. bench/compare.sh bd27773 3
#
# It prints every benchmark line prefixed with "base" or "head"; summarise
# with benchstat or by hand into bench/RESULTS.md. BASE's checkout is a
# temporary git worktree, removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
base=${1:?usage: bench/compare.sh BASE [ROUNDS]}
rounds=${2:-3}
tmp=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$here" worktree add -q --detach "$tmp/base" "$base"

benches=(
  "./bench/ GNMISetOneLeaf10k|GNMIOnChange"
  "./agent/netconf/ EditCommit10k|GetConfig10k"
)

loc() { (cd "$1" && git ls-files '*.go' | grep -v '^gen/' | xargs cat | wc -l); }
echo "lines of non-generated Go: base $(loc "$tmp/base")  head $(loc "$here")"

for r in $(seq "$rounds"); do
  for side in base head; do
    dir=$here
    [ "$side" = base ] && dir=$tmp/base
    for b in "${benches[@]}"; do
      pkg=${b%% *}
      pat=${b#* }
      (cd "$dir" && go test -run '^$' -bench "$pat" -benchtime 200x "$pkg" 2>/dev/null) |
        grep '^Benchmark' | sed "s/^/$side round$r /"
    done
  done
done
