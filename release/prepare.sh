#!/usr/bin/env bash
# Prepares a release commit: builds the archives of VERSION, and writes
# their checksums and the version into action/, which the action installs
# from. Commit the result, tag it vVERSION and push the tag; the release
# workflow rebuilds, checks the archives against action/checksums.txt and
# publishes them.
#
#   release/prepare.sh 0.2.0
set -euo pipefail
version=${1:?usage: release/prepare.sh VERSION}
cd "$(dirname "$0")/.."
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
release/build.sh "$version" "$dist" >/dev/null
cp "$dist/checksums.txt" action/checksums.txt
printf '%s\n' "$version" > action/VERSION
echo "action/VERSION = $version; action/checksums.txt:"
cat action/checksums.txt
echo "next: git commit -am 'Release v$version' && git tag v$version && git push origin v$version"
