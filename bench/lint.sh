#!/usr/bin/env bash
# Configuration lint: sluice's lint control beside `trivy config` (Trivy's
# CLI built from the same module version sluice links, run offline with its
# embedded checks) on a tree of 200 configuration files made by
# bench/lint-tree.sh. Each tool runs RUNS times (default 5), the two taking
# turns; the table gives the medians of wall time, user and system CPU and
# peak RSS, and the ratios. Then the finding sets are compared, as (file,
# check id) pairs, for the kinds both tools cover (Dockerfile, Kubernetes,
# Helm, Terraform, CloudFormation). Wall times mean something only on an
# idle machine: the script prints the load average beside them.
#
#   bash bench/lint.sh                 # from the repository root
#   RUNS=3 N=200 SLUICE=bin/sluice TRIVY=/path/to/trivy bash bench/lint.sh
#   N=1 bash bench/lint.sh             # a change of one Dockerfile
set -euo pipefail

export GOEXPERIMENT=jsonv2
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
RUNS=${RUNS:-5}
N=${N:-200}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- tools -------------------------------------------------------------------
source "$ROOT/bench/trivy-cli.sh"
if [[ -z ${SLUICE:-} ]]; then
	make -C "$ROOT" build >&2
	SLUICE=$ROOT/bin/sluice
fi
[[ -x $SLUICE ]] || { echo "no sluice binary at $SLUICE" >&2; exit 2; }
SLUICE=$(realpath "$SLUICE")
TRIVY=$(realpath "$TRIVY")
[[ -x $TRIVY ]] || { echo "no trivy binary at $TRIVY" >&2; exit 2; }

# --- the tree and the policy -------------------------------------------------
TREE=$WORK/tree
bash "$ROOT/bench/lint-tree.sh" "$TREE" "$N"
# Only the lint control, every severity (as trivy config reports them).
cat >"$WORK/policy.yaml" <<'EOF'
version: 1
controls:
  secrets: {enabled: false}
  lint:
    severity: LOW
EOF

run_sluice() {
	(cd "$TREE" && "$SLUICE" check --policy "$WORK/policy.yaml" --paths . --format json >"$WORK/sluice.json" 2>"$WORK/sluice.err") || [[ $? == 1 ]]
}
# --skip-check-update: never download a checks bundle; with an empty cache
# Trivy falls back to the checks embedded in the binary, as sluice uses.
run_trivy() {
	"$TRIVY" config --quiet --skip-check-update --cache-dir "$WORK/trivy-cache" \
		--format json --output "$WORK/trivy.json" "$TREE" 2>"$WORK/trivy.err"
}

export SLUICE TRIVY TREE WORK
export -f run_sluice run_trivy
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# once fn: runs fn under /usr/bin/time; prints wall seconds, user CPU
# seconds, system CPU seconds and peak RSS in KiB.
once() {
	local fn=$1
	if [[ -x /usr/bin/time ]]; then
		/usr/bin/time -o "$WORK/time" -f '%e %U %S %M' bash -c "$fn"
		cat "$WORK/time"
	else
		local s e
		s=$(date +%s.%N)
		"$fn"
		e=$(date +%s.%N)
		echo "$(echo "$e - $s" | bc) 0 0 0"
	fi
}
col() { awk -v c="$2" '{print $c}' "$1" | median; }

run_sluice # warm the page cache, and fail early
run_trivy
# The tools take turns, so that both see the same load from whatever else
# the machine runs.
for ((i = 0; i < RUNS; i++)); do
	once run_sluice >>"$WORK/sluice.times"
	once run_trivy >>"$WORK/trivy.times"
done
echo
echo "load average before and after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
printf '%-26s %9s %9s %9s %9s\n' "median of $RUNS runs" "wall s" "user s" "sys s" "RSS MiB"
for t in sluice trivy; do
	name="sluice check (lint)"
	[[ $t == trivy ]] && name="trivy config"
	printf '%-26s %9.3f %9.3f %9.3f %9d\n' "$name" "$(col "$WORK/$t.times" 1)" "$(col "$WORK/$t.times" 2)" \
		"$(col "$WORK/$t.times" 3)" "$(($(col "$WORK/$t.times" 4) / 1024))"
done
ratio() { echo "$(col "$WORK/trivy.times" "$1") / $(col "$WORK/sluice.times" "$1")" | bc -l; }
printf '%-26s %8.1fx %8.1fx\n' "speed-up (trivy / sluice)" "$(ratio 1)" "$(ratio 2)"
echo "(wall times are only comparable on an otherwise idle machine; user CPU is steadier under load)"

# --- finding sets ------------------------------------------------------------
covered='^(services|k8s|charts|infra|cfn)/'
jq -r '.controls[] | select(.name == "lint") | .findings[]? | "\(.file) \(.rule)"' "$WORK/sluice.json" |
	grep -E "$covered" | sort -u >"$WORK/sluice.set"
jq -r '.Results[]? | .Target as $t | .Misconfigurations[]? | select(.Status == "FAIL") | "\($t) \(.ID)"' "$WORK/trivy.json" |
	grep -E "$covered" | sort -u >"$WORK/trivy.set"
both=$(comm -12 "$WORK/sluice.set" "$WORK/trivy.set" | wc -l)
only_s=$(comm -23 "$WORK/sluice.set" "$WORK/trivy.set" | wc -l)
only_t=$(comm -13 "$WORK/sluice.set" "$WORK/trivy.set" | wc -l)
echo
echo "findings (file, check) for the kinds both cover: both $both, only sluice $only_s, only trivy $only_t"
comm -23 "$WORK/sluice.set" "$WORK/trivy.set" | head -10 | sed 's/^/  only sluice: /'
comm -13 "$WORK/sluice.set" "$WORK/trivy.set" | head -10 | sed 's/^/  only trivy:  /'
other=$(jq -r '.controls[] | select(.name == "lint") | .findings[]? | .file' "$WORK/sluice.json" | grep -vcE "$covered" || true)
echo "sluice findings in workflows and Tekton files (trivy has no checks for these): $other"
