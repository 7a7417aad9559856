#!/usr/bin/env bash
# Configuration lint: sluice's lint control beside `trivy config` (Trivy's
# CLI built from the same module version sluice links, run offline with its
# embedded checks) on a tree of 200 configuration files made by
# bench/lint-tree.sh. Each tool runs RUNS times (default 5); the table gives
# the median wall time and the ratio. Then the finding sets are compared, as
# (file, check id) pairs, for the kinds both tools cover (Dockerfile,
# Kubernetes, Helm, Terraform, CloudFormation), and sluice's peak RSS.
#
#   bash bench/lint.sh                 # from the repository root
#   RUNS=3 N=200 SLUICE=bin/sluice TRIVY=/path/to/trivy bash bench/lint.sh
set -euo pipefail

export GOEXPERIMENT=jsonv2
RUNS=${RUNS:-5}
N=${N:-200}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- tools -------------------------------------------------------------------
if [[ -z ${TRIVY:-} ]]; then
	TRIVY=$(go env GOPATH)/bin/trivy
	if [[ ! -x $TRIVY ]]; then
		echo "building trivy v0.74.0 from its module" >&2
		GOFLAGS=-mod=mod GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" \
			go install github.com/aquasecurity/trivy/cmd/trivy@v0.74.0
	fi
fi
if [[ -z ${SLUICE:-} ]]; then
	make -C "$ROOT" build >&2
	SLUICE=$ROOT/bin/sluice
fi
[[ -x $SLUICE ]] || { echo "no sluice binary at $SLUICE" >&2; exit 2; }
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

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { # fn -> median wall seconds of RUNS runs
	local fn=$1 i s e
	for ((i = 0; i < RUNS; i++)); do
		s=$(date +%s.%N)
		"$fn"
		e=$(date +%s.%N)
		echo "$e - $s" | bc
	done | median
}

run_sluice # warm the page cache, and fail early
run_trivy
t_sluice=$(timeit run_sluice)
t_trivy=$(timeit run_trivy)
printf '\n%-28s %10s\n' "tool ($N files, $RUNS runs)" "median s"
printf '%-28s %10.3f\n' "sluice check (lint)" "$t_sluice"
printf '%-28s %10.3f\n' "trivy config" "$t_trivy"
printf '%-28s %10.1fx\n' "speed-up" "$(echo "$t_trivy / $t_sluice" | bc -l)"

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

# --- memory ------------------------------------------------------------------
if [[ -x /usr/bin/time ]]; then
	rss=$(cd "$TREE" && /usr/bin/time -v "$SLUICE" check --policy "$WORK/policy.yaml" --paths . --format json 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}' || true)
	echo "sluice check peak RSS: $((rss / 1024)) MiB"
fi
