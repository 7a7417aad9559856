#!/usr/bin/env bash
# Builds sluice's release archives and their checksums, reproducibly: the
# same source, Go version and VERSION give byte-identical files, so the
# checksums committed with the action (action/checksums.txt) can be checked
# by anyone, and the release workflow refuses to publish archives that do
# not match them.
#
#   release/build.sh VERSION OUTDIR      e.g. release/build.sh 0.2.0 dist
set -euo pipefail
version=${1:?usage: release/build.sh VERSION OUTDIR}
out=${2:?usage: release/build.sh VERSION OUTDIR}
case $version in
  v*) echo "release/build.sh: give the version without the v: ${version#v}" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
export GOEXPERIMENT=jsonv2 CGO_ENABLED=0 GOFLAGS=-buildvcs=false
platforms=${SLUICE_PLATFORMS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in $platforms; do
  os=${p%/*} arch=${p#*/}
  name="sluice_${version}_${os}_${arch}"
  mkdir -p "$work/$name"
  GOOS=$os GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -buildid= -X main.buildVersion=v$version" \
    -o "$work/$name/sluice" ./cmd/sluice
  cp LICENSE "$work/$name/" 2>/dev/null || true
  # A reproducible archive: sorted names, fixed times and owners, no gzip
  # timestamp.
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -C "$work" -cf - "$name" | gzip -n -9 > "$out/$name.tar.gz"
done
(cd "$out" && sha256sum -- *.tar.gz | LC_ALL=C sort -k2 > checksums.txt)
cat "$out/checksums.txt"
