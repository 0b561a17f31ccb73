#!/usr/bin/env bash
# The main job, end to end: build everything; run the same unmodified XDP object in the kernel
# and in userspace (interpreter and JIT) on the same packets and show they agree frame by
# frame; then the memcached cache (cache.o) on a veth testbed with a real memcached and a real
# client, three ways side by side -- memcached alone, cache.o attached in the kernel, cache.o
# in run-datapath (AF_XDP) -- and the kernel-vs-userspace execution-time table.
# Needs root (the kernel is the reference). Cleans up its namespaces and temporary files.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/setup.sh
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: needs root for the kernel side (BPF_PROG_TEST_RUN); run: sudo $0" >&2
    exit 1
fi
bin=target/release
objdir=$(ls -d target/release/build/userxdp-programs-*/out | head -1)
work=$(mktemp -d /tmp/userxdp-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo
echo "== 1. one capture, three engines: userxdp run --engine kernel|interp|jit"
$bin/corpus --out "$work/corpus.pcap" --packets 2000
for e in kernel interp jit; do
    $bin/userxdp run --prog "$objdir/xdp_parse.o" --pcap "$work/corpus.pcap" --engine "$e" \
        --out "$work/out-$e.pcap" --dump-maps > "$work/run-$e.txt"
    grep '^[0-9]* frames' "$work/run-$e.txt"
done
for e in interp jit; do
    if cmp -s <(grep '^frame' "$work/run-kernel.txt") <(grep '^frame' "$work/run-$e.txt") \
        && cmp -s "$work/out-kernel.pcap" "$work/out-$e.pcap"; then
        echo "   $e: every verdict and output frame identical to the kernel's"
    else
        echo "   $e: DIFFERS from the kernel:"; diff <(grep '^frame' "$work/run-kernel.txt") <(grep '^frame' "$work/run-$e.txt") | head
        exit 1
    fi
done

echo
echo "== 2. cache.o in front of a real memcached: alone vs kernel vs run-datapath (AF_XDP)"
scripts/bench-cache.sh --no-build --rounds 3 --duration 3

echo
echo "== 3. kernel vs userspace, per-packet execution time (compare)"
$bin/compare --packets 500 --rounds 5 --repeat 100 \
    "$objdir/xdp_pass.o" "$objdir/xdp_parse.o" "$objdir/xdp_maps.o" "$objdir/xdp_calls.o"
