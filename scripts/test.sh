#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test of the workspace.
# Tests that need root/BPF skip (and say why) when run unprivileged; in CI they run as root.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/setup.sh --no-build
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "[test] cargo test"
cargo test --workspace --no-fail-fast
