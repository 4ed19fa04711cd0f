#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) on stable Rust, without a sanitizer.
#
#   fuzz/run-all.sh [SECONDS]
#
# Installs cargo-fuzz if it is missing, (re)seeds fuzz/corpus/ from the protocol test vectors,
# then runs each target in turn. Every target runs even if an earlier one fails; the script
# fails if any did. Crashing inputs are left in fuzz/artifacts/TARGET/ (see fuzz/README.md).
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "=== installing cargo-fuzz ==="
    cargo install cargo-fuzz --locked
fi

./seed-corpus.sh

failed=()
for target in $(cargo fuzz list); do
    echo "=== fuzz $target for ${seconds}s ==="
    if ! cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds"; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (crashing inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a crash"
