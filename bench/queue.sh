#!/usr/bin/env bash
# The slow-path queue: what a check pays to record its verdict and enqueue
# what it defers (budget: 20 ms), and enqueue-to-completion of no-op jobs
# with 1 and 2 workers, on a SQLite file and on the local PostgreSQL (a
# database created and dropped by the run). Each benchmark runs COUNT times
# (default 5); the table gives the medians.
#
#   bash bench/queue.sh                 # from anywhere in the repository
#   COUNT=3 JOBS=1000 bash bench/queue.sh
#   SLUICE_TEST_POSTGRES_URL=postgres://... bash bench/queue.sh
set -euo pipefail

export GOEXPERIMENT=jsonv2 CGO_ENABLED=0
COUNT=${COUNT:-5}
JOBS=${JOBS:-500}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! go test -run '^$' -count "$COUNT" -benchtime 200x -bench 'Record' ./slowpath/worker/ >"$out" ||
	! go test -run '^$' -count "$COUNT" -benchtime "${JOBS}x" -bench 'Throughput' ./slowpath/worker/ >>"$out"; then
	cat "$out" >&2
	exit 1
fi

# Benchmark lines: name-CPUs  iterations  ns/op  [value unit]...
awk '
function median(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	if (!(name in ns)) order[++k] = name
	ns[name] = ns[name] " " $3
	for (i = 5; i <= NF; i++) if ($i == "jobs/s") rate[name] = rate[name] " " $(i - 1)
}
END {
	printf "%-34s %14s %12s\n", "benchmark (median of runs)", "per op", "jobs/s"
	for (i = 1; i <= k; i++) {
		n = order[i]
		r = (n in rate) ? sprintf("%12.0f", median(rate[n])) : sprintf("%12s", "-")
		printf "%-34s %11.2f ms %s\n", n, median(ns[n]) / 1e6, r
	}
}' "$out"
echo
echo "Record: one verdict, two ledger rows, two deferred jobs in one transaction."
echo "OpenAndRecord: the same plus opening the queue, as each 'sluice check --queue' does."
echo "Throughput: per op is enqueue-to-completion per no-op job ($JOBS jobs enqueued in one batch, then drained)."
