#!/usr/bin/env bash
# Checks contrib/petrel.service with `systemd-analyze verify`, pointed at the binary just built
# (the unit names /usr/local/bin/petrel, which a build machine does not have). Any warning
# fails: systemd ignores an unknown or misspelt key with only a warning, so a sandboxing option
# with a typo would silently not apply. Skips when systemd-analyze is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze not found; skipping the unit check"
    exit 0
fi
bin="$(pwd)/target/release/petrel"
test -x "$bin" || { echo "$bin: build it first (make build)"; exit 1; }
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/local/bin/petrel#$bin#g" contrib/petrel.service > "$dir/petrel.service"
out="$(systemd-analyze verify "$dir/petrel.service" 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
    echo "$out"
    echo "contrib/petrel.service: systemd-analyze verify warned"
    exit 1
fi
echo "contrib/petrel.service: systemd-analyze verify passed"
