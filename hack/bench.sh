#!/usr/bin/env bash
# make bench: builds the benchmark driver and the Go floor hook, then runs
# every benchmark item and prints one table (row, measured, anchor, ratio,
# target, met). Results: bench/results/{results.md,results.json,hook-latency.svg}.
# Needs root. Extra flags go to the driver: hack/bench.sh -only hook,churn
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--mod=mod}"
GO="${GO:-go}"
if [ "$(id -u)" != 0 ]; then
	echo "bench: needs root (network namespaces, macvtap devices, libvirtd)" >&2
	exit 1
fi
"$GO" build -o bin/virtap-bench ./bench
CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o bin/bench-floor ./bench/floor
# The whole run must stay under 10 minutes; stop it well before.
exec timeout --signal=INT --kill-after=30s 570s bin/virtap-bench -repo . "$@"
