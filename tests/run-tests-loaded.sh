#!/usr/bin/env bash
# Runs the whole suite (tests/run-tests.sh) N times in a row (default 10) while a CPU hog keeps every
# core busy, the way CI's two shared cores are: a test that passes only on an idle machine fails here.
# Prints one line per run and a summary; exits non-zero if any run failed. Each run's output is kept
# in the directory given by RUN_LOG_DIR (default: a new temporary directory, printed at the start).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
log_dir=${RUN_LOG_DIR:-$(mktemp -d -t run-tests-loaded.XXXXXX)}
mkdir -p "$log_dir"
echo "run-tests-loaded: $runs runs, a CPU hog on each of $(nproc) cores, logs in $log_dir"

hogs=()
for _ in $(seq "$(nproc)"); do
  bash -c 'while :; do :; done' &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT

green=0
for run in $(seq "$runs"); do
  started=$SECONDS
  if tests/run-tests.sh >"$log_dir/run-$run.log" 2>&1; then
    green=$((green + 1))
    verdict=green
  else
    verdict="RED (see $log_dir/run-$run.log)"
  fi
  echo "run-tests-loaded: run $run/$runs $verdict in $((SECONDS - started)) s: $(tail -n 1 "$log_dir/run-$run.log")"
done

echo "run-tests-loaded: $green of $runs runs green"
[ "$green" -eq "$runs" ]
