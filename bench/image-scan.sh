#!/usr/bin/env bash
# Image scan: sluice's deep image scan (package deep, Trivy as a library, as
# the worker runs it, in the small program bench/imagescan) beside Trivy's
# CLI built from the same module version (`trivy image --input`, offline,
# the same DB), on one image: this machine's Debian package database in a
# layer, saved with `docker save` layout, and a DB built from the fixture
# advisories of slowpath/deep/testdata. Each tool runs RUNS times (default
# 5) on a first scan (Trivy's layer cache is emptied before each run;
# sluice keeps none); the table gives median wall times and the ratio, then
# checks both found the same vulnerability IDs.
#
#   bash bench/image-scan.sh                 # from anywhere in the repository
#   RUNS=9 TRIVY=/path/to/trivy bash bench/image-scan.sh
#   SBOM=1 bash bench/image-scan.sh        # sluice also makes its CycloneDX SBOM
#   EXTRA="usr/bin usr/lib/python3 usr/lib/node_modules" bash bench/image-scan.sh  # a larger image
set -euo pipefail

export GOEXPERIMENT=jsonv2 CGO_ENABLED=0
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

source "$ROOT/bench/trivy-cli.sh"
(cd "$ROOT" && go build -o "$WORK/imagescan" ./bench/imagescan)
(cd "$ROOT" && EXTRA=${EXTRA:-} "$WORK/imagescan" prepare "$WORK")
echo "image: $(du -h "$WORK/image.tar" | cut -f1)" >&2
CACHE=$WORK/trivy-cache # holds db/ (trivy.db, metadata.json)

# Like for like: Trivy's JSON report has no SBOM, so sluice makes none
# either unless SBOM=1 (its default in the worker; about 0.2 s more on the
# larger image).
SBOM=${SBOM:-0}
run_sluice() { SBOM=$SBOM "$WORK/imagescan" scan "tarball:$WORK/image.tar" "$CACHE/db" >"$WORK/sluice.ids"; }
run_trivy() {
	rm -rf "$CACHE/fanal" # a first scan: no layer cached
	"$TRIVY" image --input "$WORK/image.tar" --skip-db-update --skip-java-db-update --offline-scan \
		--scanners vuln --cache-dir "$CACHE" --format json --quiet --output "$WORK/trivy.json"
}

wall() { # fn -> wall seconds of one run
	local t0 t1
	t0=$EPOCHREALTIME
	"$1"
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f\n", b - a}'
}
median() { sort -g | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'; }

run_sluice && run_trivy # warm the page cache for both
# Interleaved, so that a busy spell of the machine weighs on both alike.
for ((i = 0; i < RUNS; i++)); do
	wall run_sluice >>"$WORK/sluice.times"
	wall run_trivy >>"$WORK/trivy.times"
done
s=$(median <"$WORK/sluice.times")
t=$(median <"$WORK/trivy.times")
printf '%-28s %10s\n' "tool (median of $RUNS)" "wall s"
printf '%-28s %10s\n' "sluice (deep.ScanImage, SBOM=$SBOM)" "$s"
printf '%-28s %10s\n' "trivy image --input" "$t"
awk -v s="$s" -v t="$t" 'BEGIN {printf "ratio sluice/trivy: %.2fx (target <= 1.10x)\n", s / t}'

python3 - "$WORK/trivy.json" "$WORK/sluice.ids" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
theirs = sorted({v["VulnerabilityID"] for r in d.get("Results", []) for v in r.get("Vulnerabilities") or []})
ours = sorted(l.strip() for l in open(sys.argv[2]) if l.strip())
print("vulnerability IDs: sluice", ours)
print("                   trivy ", theirs)
if ours != theirs:
    print("DIFFERENT"); sys.exit(1)
print("same IDs")
PY
