#!/bin/sh
# Runs the datastore benchmarks whose figures are in bench/store_RESULTS.md.
# Usage: bench/store_bench.sh [extra go test flags]
set -eu
cd "$(dirname "$0")/.."
uptime
go test -run XXX -bench 'CommitOneLeaf|CommitKeyAddDelete|CommitNewEntry|JournalSync' -benchtime 300x "$@" ./store
go test -run XXX -bench 'LoadValidate10k' -benchtime 5x "$@" ./store
go test -run XXX -bench 'Naive10k' -benchtime 2x -timeout 30m "$@" ./store
uptime
