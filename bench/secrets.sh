#!/usr/bin/env bash
# Secret scanning throughput: sluice beside gitleaks v8.30.1, on
#   (a) the Go source tree, $(go env GOROOT)/src, every file, and
#   (b) a 200-file change: a temporary git repository whose last commit adds
#       200 files taken from GOROOT/src, a few with planted secrets.
# Each tool runs RUNS times (default 5) per case; the table gives the median
# wall time, throughput and sluice's throughput over gitleaks'. Then the peak
# RSS of sluice on the change (/usr/bin/time -v).
#
#   bash bench/secrets.sh            # from the repository root
#   RUNS=3 SLUICE=/path/to/sluice TREE=/some/dir bash bench/secrets.sh
#
# The engine alone (no process start, files already in memory):
#   GOEXPERIMENT=jsonv2 go test -run '^$' -bench ScanGoroot -count 5 ./fastpath/secrets
set -euo pipefail

export GOEXPERIMENT=jsonv2
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GOROOT_SRC=$(go env GOROOT)/src
TREE=${TREE:-$GOROOT_SRC} # the tree for case (a)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- tools -------------------------------------------------------------------
GITLEAKS=$(command -v gitleaks || true)
if [[ -z $GITLEAKS ]]; then
	GITLEAKS=$(go env GOPATH)/bin/gitleaks
	if [[ ! -x $GITLEAKS ]]; then
		echo "installing gitleaks v8.30.1" >&2
		go install github.com/zricethezav/gitleaks/v8@v8.30.1
	fi
fi
"$GITLEAKS" version >/dev/null

if [[ -z ${SLUICE:-} ]]; then
	make -C "$ROOT" build >&2
	SLUICE=$ROOT/bin/sluice
fi
[[ -x $SLUICE ]] || { echo "no sluice binary at $SLUICE" >&2; exit 2; }
SLUICE=$(realpath "$SLUICE")

if [[ ! -x /usr/bin/time ]]; then
	apt-get update >&2 && apt-get install -y time >&2
fi

# --- the change ----------------------------------------------------------------
REPO=$WORK/change
mkdir -p "$REPO"
git -C "$REPO" init -q
git -C "$REPO" config user.email bench@example.invalid
git -C "$REPO" config user.name bench
git -C "$REPO" config commit.gpgsign false
echo "# bench" >"$REPO/README.md"
git -C "$REPO" add README.md
git -C "$REPO" commit -qm base
# 200 files spread over the tree (every 40th text file, sorted for stability).
mapfile -t PICK < <(cd "$GOROOT_SRC" && find . -type f \( -name '*.go' -o -name '*.md' -o -name '*.txt' -o -name '*.s' \) |
	LC_ALL=C sort | awk 'NR % 40 == 0' | head -200)
for f in "${PICK[@]}"; do
	mkdir -p "$REPO/$(dirname "$f")"
	cp "$GOROOT_SRC/$f" "$REPO/$f"
done
# Planted secrets (random, never valid).
printf '\nconst token = "ghp_R2k9Qz7LmX4pT8vW1bN6cY3hJ5sD0fGaKe12"\n' >>"$REPO/${PICK[3]}"
printf '\n// AWS_ACCESS_KEY_ID=AKIAQ7X3MZ5TJ2WB6KPD\n' >>"$REPO/${PICK[50]}"
printf '\n// stripe: sk_live_4eC39HqLyjWDarjtT1zdp7dc9Gx2\n' >>"$REPO/${PICK[120]}"
git -C "$REPO" add -A
git -C "$REPO" commit -qm "200 files"

# --- measuring -----------------------------------------------------------------
# run_median CMD...: runs CMD $RUNS times in the current directory; exit 0 or
# 1 (findings) is fine. Prints the median wall time in seconds.
run_median() {
	local times=() i t0 t1 rc
	for ((i = 0; i < RUNS; i++)); do
		t0=$EPOCHREALTIME
		rc=0
		"$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
		t1=$EPOCHREALTIME
		if ((rc > 1)); then
			echo "failed (exit $rc): $*" >&2
			cat "$WORK/err" >&2
			exit 1
		fi
		times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", b - a}')")
	done
	printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'
}

tree_bytes() { find "$1" -type f -not -path '*/.git/*' -printf '%s\n' | awk '{s+=$1} END {print s}'; }
tree_files() { find "$1" -type f -not -path '*/.git/*' | wc -l; }

ROWS=()
add_row() { # case tool files bytes seconds
	ROWS+=("$(awk -v c="$1" -v t="$2" -v f="$3" -v b="$4" -v s="$5" \
		'BEGIN {printf "%-8s %-9s %6d %8.1f %9.3f %8.1f", c, t, f, b/1e6, s, b/1e6/s}')")
}

TREE_FILES=$(tree_files "$TREE")
TREE_BYTES=$(tree_bytes "$TREE")
CHANGE_BYTES=0
for f in "${PICK[@]}"; do CHANGE_BYTES=$((CHANGE_BYTES + $(stat -c %s "$REPO/$f"))); done

echo "gitleaks on the tree ($RUNS runs)..." >&2
GL_TREE=$(run_median "$GITLEAKS" dir --no-banner --log-level error --report-format json --report-path "$WORK/gl-tree.json" "$TREE")
echo "sluice on the tree ($RUNS runs)..." >&2
SL_TREE=$(run_median "$SLUICE" check --paths "$TREE" --format json)
cd "$REPO"
echo "gitleaks on the change ($RUNS runs)..." >&2
GL_CHANGE=$(run_median "$GITLEAKS" git --no-banner --log-level error --log-opts=HEAD~1..HEAD --report-format json --report-path "$WORK/gl-change.json" .)
echo "sluice on the change ($RUNS runs)..." >&2
SL_CHANGE=$(run_median "$SLUICE" check --base HEAD~1 --head HEAD --format json)
"$SLUICE" check --base HEAD~1 --head HEAD --format json >"$WORK/sl-change.json" || true
/usr/bin/time -v "$SLUICE" check --base HEAD~1 --head HEAD --format json >/dev/null 2>"$WORK/time.txt" || true
RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
cd "$ROOT"

add_row tree gitleaks "$TREE_FILES" "$TREE_BYTES" "$GL_TREE"
add_row tree sluice "$TREE_FILES" "$TREE_BYTES" "$SL_TREE"
add_row change gitleaks 200 "$CHANGE_BYTES" "$GL_CHANGE"
add_row change sluice 200 "$CHANGE_BYTES" "$SL_CHANGE"

echo
printf '%-8s %-9s %6s %8s %9s %8s\n' case tool files MB "median s" "MB/s"
printf '%s\n' "${ROWS[@]}"
echo
awk -v g="$GL_TREE" -v s="$SL_TREE" 'BEGIN {printf "tree:   sluice/gitleaks throughput %.1fx\n", g/s}'
awk -v g="$GL_CHANGE" -v s="$SL_CHANGE" 'BEGIN {printf "change: sluice/gitleaks throughput %.1fx\n", g/s}'
echo "sluice peak RSS on the change: $((RSS_KB / 1024)) MiB"
echo "planted secrets found on the change: gitleaks $(grep -c '"RuleID"' "$WORK/gl-change.json" || true)," \
	"sluice $(grep -o '"rule": *"[a-z0-9-]*"' "$WORK/sl-change.json" | wc -l)"
