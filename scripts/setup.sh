#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, test and run userxdp, and builds it.
# Idempotent: packages already present are not reinstalled; says what it does.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
build=1
[ "${1:-}" = "--no-build" ] && build=0

PACKAGES=(clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config bpftool ethtool memcached
          tcpdump iproute2 linux-libc-dev xdp-tools iputils-ping)

say() { printf '[setup] %s\n' "$*"; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing packages: ${missing[*]} - run this script as root (or install them) first"
        exit 1
    fi
    say "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present: ${PACKAGES[*]}"
fi

if ! command -v cargo >/dev/null; then
    say "cargo not found: install a Rust toolchain (rustup) first"
    exit 1
fi
say "rust: $(rustc --version)"

# bpffs is not mounted by default on this machine kind; pinning and bpftool want it.
if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf; then
    say "mounting bpffs on /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf || say "could not mount bpffs (pinning will be unavailable)"
fi

if [ $build -eq 1 ]; then
    say "building the workspace (release): eBPF objects and binaries"
    cargo build --release --workspace --bins --quiet
    say "done: objects in $(ls -d target/release/build/userxdp-programs-*/out 2>/dev/null | head -1)"
fi
