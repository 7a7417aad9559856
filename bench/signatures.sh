#!/usr/bin/env bash
# Benchmark: verifying 20 cosign-signed images on a local registry.
#   sluice: one `sluice check` with 20 --image flags (the signatures control
#           verifies them side by side);
#   cosign: `cosign verify --key k.pub --insecure-ignore-tlog REF` once per
#           image, sequentially (the usual CI loop).
# Prints the median wall time of 5 runs of each and the ratio.
#
# Needs: make build (bin/sluice) and the cosign CLI of the version go.mod
# pins, e.g.
#   GOEXPERIMENT=jsonv2 go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
# Usage: bench/signatures.sh [N_IMAGES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
export GOEXPERIMENT=jsonv2

n=${1:-20}
runs=${2:-5}
sluice=${SLUICE:-bin/sluice}
cosign=${COSIGN:-$(command -v cosign || echo "$(go env GOPATH)/bin/cosign")}
[[ -x $sluice ]] || { echo "no $sluice: run make build" >&2; exit 2; }
[[ -x $cosign ]] || { echo "no cosign CLI: GOEXPERIMENT=jsonv2 go install github.com/sigstore/cosign/v2/cmd/cosign@$(go list -m -f '{{.Version}}' github.com/sigstore/cosign/v2)" >&2; exit 2; }

work=$(mktemp -d)
reg_pid=
cleanup() { [[ -n $reg_pid ]] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/registry" ./bench/signatures
# The policy disables the other fast controls so that the timing is the
# signatures control's (plus sluice's process start); set DISABLE= to keep them.
"$work/registry" -dir "$work" -n "$n" -disable "${DISABLE-secrets,lint}" >"$work/addr" &
reg_pid=$!
for _ in $(seq 100); do [[ -s $work/addr ]] && break; sleep 0.1; done
[[ -s $work/addr ]] || { echo "registry did not start" >&2; exit 1; }
mapfile -t refs <"$work/refs.txt"
mkdir -p "$work/empty"
image_flags=()
for r in "${refs[@]}"; do image_flags+=(--image "$r"); done

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_sluice() {
	"$sluice" check --policy "$work/policy.yaml" --format json "${image_flags[@]}" "$work/empty" >"$work/verdict.json"
}
run_cosign() {
	for r in "${refs[@]}"; do
		"$cosign" verify --key "$work/k.pub" --insecure-ignore-tlog "$r" >/dev/null 2>"$work/cosign.err"
	done
}

# Warm up (page cache, first-run effects) and check both agree.
run_sluice || { echo "sluice check failed:" >&2; cat "$work/verdict.json" >&2; exit 1; }
verified=$(grep -o '"status": *"verified"' "$work/verdict.json" | wc -l)
[[ $verified -eq $n ]] || { echo "sluice verified $verified of $n images" >&2; cat "$work/verdict.json" >&2; exit 1; }
run_cosign || { echo "cosign verify failed:" >&2; cat "$work/cosign.err" >&2; exit 1; }

s_times=() c_times=()
for _ in $(seq "$runs"); do
	t0=$(now); run_sluice; t1=$(now); s_times+=("$(echo "$t1 - $t0" | bc -l)")
	t0=$(now); run_cosign; t1=$(now); c_times+=("$(echo "$t1 - $t0" | bc -l)")
done
s=$(printf '%s\n' "${s_times[@]}" | median)
c=$(printf '%s\n' "${c_times[@]}" | median)
printf 'images:                    %d (each in its own repository, plain HTTP on 127.0.0.1)\n' "$n"
printf 'sluice check (1 process):  %.3f s  (median of %d)\n' "$s" "$runs"
printf 'cosign verify x %d (seq):  %.3f s  (median of %d)\n' "$n" "$c" "$runs"
printf 'ratio cosign/sluice:       %.1fx\n' "$(echo "$c / $s" | bc -l)"
awk '/"name": *"signatures"/ {on=1} on && /"duration_ms"/ {gsub(/[^0-9]/, ""); print "signatures control alone:  " $0 " ms (last run, from the verdict)"; exit}' "$work/verdict.json"
