#!/usr/bin/env bash
# Installs the sluice binary for the runner's OS and architecture, pinned to
# the action's version (action/VERSION) and verified against the checksums
# committed with the action (action/checksums.txt) before it is unpacked.
# A different version can be asked for only with its archive's sha256.
#
# Environment (set by action.yml from its inputs; never interpolated):
#   ACTION_DIR        folder of this script (the action's action/ folder)
#   RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP   set by the runner
#   SLUICE_VERSION    optional: another released version (e.g. 0.3.1)
#   SLUICE_SHA256     required with SLUICE_VERSION: that archive's sha256
#   SLUICE_DOWNLOAD_URL  base URL of the release downloads (a mirror, GHES)
# Prints the binary's path as bin=PATH to GITHUB_OUTPUT (or stdout).
set -euo pipefail

die() { echo "::error title=sluice install::$*" >&2; exit 1; }

dir=${ACTION_DIR:?ACTION_DIR is not set}
pinned=$(tr -d '[:space:]' < "$dir/VERSION")
version=${SLUICE_VERSION:-}
want=
if [ -n "$version" ] && [ "${version#v}" != "$pinned" ]; then
  version=${version#v}
  want=${SLUICE_SHA256:-}
  [ -n "$want" ] || die "version $version is not the action's own ($pinned): give its archive's sha256 in the sha256 input, from that release's checksums.txt"
fi
version=${version:-$pinned}
version=${version#v}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([.-][0-9A-Za-z.-]+)?$ ]] || die "this commit of the action is not a release (action/VERSION is '$pinned'): use a released tag, e.g. uses: sluice-ci/sluice@v0.2.0 (pinned by its commit SHA)"

case ${RUNNER_OS:-$(uname -s)} in
  Linux|linux) os=linux ;;
  macOS|Darwin) os=darwin ;;
  *) die "no sluice binary is released for ${RUNNER_OS:-$(uname -s)} (Linux and macOS are)" ;;
esac
case ${RUNNER_ARCH:-$(uname -m)} in
  X64|x86_64|amd64) arch=amd64 ;;
  ARM64|arm64|aarch64) arch=arm64 ;;
  *) die "no sluice binary is released for ${RUNNER_ARCH:-$(uname -m)} (X64 and ARM64 are)" ;;
esac

name="sluice_${version}_${os}_${arch}"
if [ -z "$want" ]; then
  want=$(awk -v f="$name.tar.gz" '$2 == f || $2 == "*" f { print $1 }' "$dir/checksums.txt")
  [ -n "$want" ] || die "action/checksums.txt has no entry for $name.tar.gz"
fi
[[ $want =~ ^[0-9a-f]{64}$ ]] || die "the sha256 for $name.tar.gz is not 64 hex digits"

base=${SLUICE_DOWNLOAD_URL:-https://github.com/sluice-ci/sluice/releases/download}
tmp=${RUNNER_TEMP:-$(mktemp -d)}/sluice-install
rm -rf "$tmp"
mkdir -p "$tmp"
archive="$tmp/$name.tar.gz"
curl -fsSL --retry 3 --proto '=https,http' -o "$archive" "$base/v$version/$name.tar.gz" \
  || die "downloading $base/v$version/$name.tar.gz failed"

if command -v sha256sum >/dev/null; then
  got=$(sha256sum "$archive" | awk '{print $1}')
else
  got=$(shasum -a 256 "$archive" | awk '{print $1}')
fi
if [ "$got" != "$want" ]; then
  rm -f "$archive"
  die "checksum mismatch for $name.tar.gz: got $got, want $want; not installing it"
fi

tar -xzf "$archive" -C "$tmp"
bin="$tmp/$name/sluice"
[ -x "$bin" ] || die "the archive holds no $name/sluice"
"$bin" version
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "bin=$bin" >> "$GITHUB_OUTPUT"
else
  echo "bin=$bin"
fi
