#!/usr/bin/env bash
# Cache benchmark (issue 6): GET throughput and p50/p99 latency of a Zipf key mix against
#   vanilla     memcached alone (nothing attached to the server's veth),
#   kernel      cache.o attached natively in the kernel (`userxdp attach`, XDP + tcx egress),
#   userspace   cache.o in `run-datapath` (AF_XDP, TAP exception path, egress program),
# with the same client (`mcload`, release build), the same cores and the same testbed, in one
# run; the modes alternate (rotated order) for --rounds rounds. Prints a Markdown table.
#
#   scripts/bench-cache.sh [--rounds N (3)] [--duration SECS (4)] [--warmup SECS (1)]
#                          [--threads N (2)] [--pipeline D (32)] [--keys N (10000)] [--zipf S (0.99)]
#                          [--value-size B (64)] [--client-cores LIST (0)] [--server-core N (1)]
#                          [--memcached-cores LIST (the server core)]
#                          [--modes "vanilla kernel userspace"] [--dp-args "ARGS"] [--no-build]
#                          [--name PREFIX (uxbench)] [--profile release|debug (release)]
#                          [--napi MODE:DEFER:FLUSH_NS ...] [--rx-on-client]
#
# Layout: scripts/testbed.sh with 1 queue, memcached (-t 1) pinned to --server-core, an
# XDP_PASS program on the client's veth end in every mode (kernel XDP_TX needs it; the other
# modes pay the same). The client (mcload, pinned to --client-cores) first SETs every key
# once (nothing attached); each measurement is GET-only, after --warmup seconds of the same
# load that warm the cache. run-datapath runs its worker on --server-core.
# Receive processing of veth-srv runs on the server core in every mode, as a NIC queue's
# interrupt would: its NAPI is threaded and the thread pinned to --server-core (kernel XDP,
# the AF_XDP copy into the UMEM), and RPS sends the rest (vanilla: veth without XDP or GRO
# has no NAPI) to the same core. Without it (--rx-on-client) veth runs the server's receive
# path in the softirq of the sending CPU, i.e. the client's core: the kernel cache's work then
# competes with the client and memcached's network stack runs beside it.
# veth-srv's NAPI settings can be set per mode (--napi, repeatable; shown in the table). The
# default is 0/0 (kernel defaults) for every mode, not the testbed's napi_defer_hard_irqs=2 /
# gro_flush_timeout=200000: with an XDP program attached veth runs its NAPI, and the deferral
# parks each request up to 200 us. Measured here (4 threads, 3 s): kernel 17 k GET/s, p50
# 228 us with 2/200000 vs 104-110 k GET/s, p50 6 us with 0/0; run-datapath 8 k vs 25-30 k.
# "by cache" is the share of GETs memcached did not see (its get_hits+get_misses, read over
# TCP inside the server namespace, never through XDP): the datapath answered them.
#
# Bounded: every step has a timeout; the defaults take about 1 minute after the build.
# Traffic stays in the testbed's namespaces (198.18.0.0/24). Exit 77 when the host cannot run
# it (not root, tool missing). Everything it started is stopped on exit, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
DURATION=4
WARMUP=1
THREADS=2
PIPELINE=32
KEYS=10000
ZIPF=0.99
VSIZE=64
CLIENT_CORES=0
SERVER_CORE=1
MC_CORES=""
MODES="vanilla kernel userspace"
DP_ARGS=""
BUILD=1
NAME=uxbench
PROFILE=release
RX_ON_SERVER=1
declare -A NAPI=([vanilla]="0 0" [kernel]="0 0" [userspace]="0 0")
TAP=uxtap0
CMDLINE="scripts/bench-cache.sh $*"

die() { printf 'bench-cache: %s\n' "$*" >&2; exit 1; }
say() { printf '[bench-cache] %s\n' "$*" >&2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    --rx-on-client) RX_ON_SERVER=0; shift ;;
    --keys) KEYS=$2; shift 2 ;;
    --zipf) ZIPF=$2; shift 2 ;;
    --value-size) VSIZE=$2; shift 2 ;;
    --client-cores) CLIENT_CORES=$2; shift 2 ;;
    --server-core) SERVER_CORE=$2; shift 2 ;;
    --memcached-cores) MC_CORES=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --dp-args) DP_ARGS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --name) NAME=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --napi)
        IFS=: read -r m d f <<<"$2"
        [[ "$m" =~ ^(vanilla|kernel|userspace)$ && "$d" =~ ^[0-9]+$ && "$f" =~ ^[0-9]+$ ]] ||
            die "--napi MODE:DEFER:FLUSH_NS, e.g. kernel:0:0"
        NAPI[$m]="$d $f"
        shift 2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench-cache: needs root (namespaces, XDP)" >&2; exit 77; }
for t in ip taskset timeout python3 memcached; do
    command -v "$t" >/dev/null || { echo "bench-cache: '$t' not found" >&2; exit 77; }
done
for m in $MODES; do
    case "$m" in vanilla | kernel | userspace) ;; *) die "unknown mode $m" ;; esac
done

if [ "$BUILD" = 1 ]; then
    say "cargo build --profile $PROFILE (run-datapath, userxdp, mcload)"
    (cd "$ROOT" && timeout 900 cargo build --profile "$PROFILE" -q -p userxdp-datapath -p userxdp-bench --bins)
fi
case "$PROFILE" in release) ;; debug) PROFILE=dev ;; dev) ;; *) die "--profile release|debug" ;; esac
PDIR=$([ "$PROFILE" = dev ] && echo debug || echo release)
BIN=$ROOT/target/$PDIR
for b in run-datapath userxdp mcload; do
    [ -x "$BIN/$b" ] || die "$BIN/$b missing: cargo build --profile $PROFILE -p userxdp-datapath -p userxdp-bench --bins"
done
# The objects of the newest build of userxdp-programs in that profile.
CACHE_O=$(ls -t "$ROOT"/target/"$PDIR"/build/userxdp-programs-*/out/cache.o 2>/dev/null | head -1)
[ -n "$CACHE_O" ] || die "no $PDIR cache.o: build first"
OBJDIR=$(dirname "$CACHE_O")

WORK=$(mktemp -d /tmp/bench-cache.XXXXXX)
BG_PID=""
cleanup() {
    local rc=$?
    if [ -n "$BG_PID" ]; then
        kill -TERM "$BG_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$BG_PID" 2>/dev/null || true
    fi
    timeout 60 "$ROOT/scripts/testbed.sh" down --name "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "testbed $NAME (1 queue, memcached, xdp_pass on the client's veth)"
eval "$(timeout 90 "$ROOT/scripts/testbed.sh" up --name "$NAME" --queues 1 --memcached \
    --cli-xdp "$OBJDIR/xdp_pass.o" 2>"$WORK/testbed.log")" ||
    { cat "$WORK/testbed.log" >&2; die "testbed up failed"; }
SERVER=$SRV_IP4:$MEMCACHED_PORT
MC_CORES=${MC_CORES:-$SERVER_CORE}
taskset -apc "$MC_CORES" "$MEMCACHED_PID" >/dev/null

in_srv() { timeout 20 ip netns exec "$SRV_NS" "$@"; }
xdp_on() { ip -n "$SRV_NS" link show dev "$SRV_IF" | grep -q 'prog/xdp'; }

if [ "$RX_ON_SERVER" = 1 ]; then
    in_srv sh -c "printf '%x' $((1 << SERVER_CORE)) > /sys/class/net/$SRV_IF/queues/rx-0/rps_cpus" ||
        die "cannot move $SRV_IF's receive processing to core $SERVER_CORE"
fi

# Makes veth-srv's NAPI threaded and pins the thread to the server core. veth has a NAPI only
# while XDP is attached (GRO is off), and refuses `threaded` without one: nothing to do then.
pin_napi() {
    [ "$RX_ON_SERVER" = 1 ] || return 0
    in_srv sh -c "echo 1 > /sys/class/net/$SRV_IF/threaded" 2>/dev/null || return 0
    local pid
    for pid in $(ps -eo pid=,comm= | awk -v d="napi/$SRV_IF" 'index($2, d) == 1 { print $1 }'); do
        taskset -pc "$SERVER_CORE" "$pid" >/dev/null
    done
}

# memcached's get_hits + get_misses, over TCP inside the server namespace.
mc_gets() {
    in_srv bash -c 'exec 3<>/dev/tcp/'"$SRV_IP4/$MEMCACHED_PORT"'; printf "stats\r\nquit\r\n" >&3; timeout 2 cat <&3' |
        tr -d '\r' | awk '$2 == "get_hits" || $2 == "get_misses" { s += $3 } END { print s + 0 }'
}

mcload() {
    local secs=$1; shift
    timeout $((secs + 30)) ip netns exec "$CLI_NS" taskset -c "$CLIENT_CORES" "$BIN/mcload" \
        --server "$SERVER" --threads "$THREADS" --keys "$KEYS" --zipf "$ZIPF" \
        --value-size "$VSIZE" --timeout-ms 200 "$@"
}

wait_until() { # seconds, what, command...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@"; do
        [ -n "$BG_PID" ] && ! kill -0 "$BG_PID" 2>/dev/null && { cat "$WORK/bg.log" >&2; die "$what: process exited"; }
        [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
        sleep 0.1
    done
}

set_napi() { # defer flush_ns
    in_srv sh -c "echo $1 > /sys/class/net/$SRV_IF/napi_defer_hard_irqs && echo $2 > /sys/class/net/$SRV_IF/gro_flush_timeout"
}

start_mode() {
    # shellcheck disable=SC2086 # two numbers
    set_napi ${NAPI[$1]}
    case "$1" in
    vanilla) ;;
    kernel)
        ip netns exec "$SRV_NS" "$BIN/userxdp" attach --iface "$SRV_IF" --prog "$CACHE_O" \
            --egress cache_egress --duration 300 >"$WORK/bg.log" 2>&1 &
        BG_PID=$!
        wait_until 20 "userxdp attach" xdp_on
        wait_until 20 "the egress link" grep -q '^attached' "$WORK/bg.log"
        ;;
    userspace)
        # shellcheck disable=SC2086 # DP_ARGS is a list of words
        ip netns exec "$SRV_NS" "$BIN/run-datapath" --iface "$SRV_IF" --queues 0 \
            --cores "$SERVER_CORE" --prog "$CACHE_O" --egress-prog "$CACHE_O" --tap "$TAP" \
            --duration 300s --json $DP_ARGS >"$WORK/bg.log" 2>&1 &
        BG_PID=$!
        wait_until 30 "run-datapath" xdp_on
        wait_until 30 "the TAP" ip -n "$SRV_NS" link show "$TAP" >/dev/null 2>&1
        ip -n "$SRV_NS" addr del "$SRV_IP4/24" dev "$SRV_IF"
        ip -n "$SRV_NS" addr add "$SRV_IP4/24" dev "$TAP"
        ;;
    esac
}

stop_mode() {
    [ -n "$BG_PID" ] || return 0
    kill -TERM "$BG_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$BG_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$BG_PID" 2>/dev/null || true
    wait "$BG_PID" 2>/dev/null || true
    BG_PID=""
    if [ "$1" = userspace ]; then
        ip -n "$SRV_NS" addr del "$SRV_IP4/24" dev "$TAP" 2>/dev/null || true
        ip -n "$SRV_NS" addr add "$SRV_IP4/24" dev "$SRV_IF" 2>/dev/null || true
    fi
    ! xdp_on || die "$1: XDP still attached after stop"
}

say "preload: SET every key once (nothing attached)"
mcload 60 --preload --requests 1 --get-ratio 1 >/dev/null

read -r -a modes <<<"$MODES"
n=${#modes[@]}
: >"$WORK/results"
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        mode=${modes[$(((i + r) % n))]}
        start_mode "$mode"
        pin_napi
        mcload "$WARMUP" --duration "$WARMUP" --get-ratio 1 --pipeline "$PIPELINE" >/dev/null || true
        before=$(mc_gets)
        rc=0
        mcload "$DURATION" --duration "$DURATION" --get-ratio 1 --pipeline "$PIPELINE" --json >"$WORK/out.json" || rc=$?
        after=$(mc_gets)
        stop_mode "$mode"
        [ $rc -le 1 ] || die "$mode: mcload failed (exit $rc)"
        python3 - "$mode" "$r" "$((after - before))" "$WORK/out.json" "${NAPI[$mode]/ //}" >>"$WORK/results" <<'EOF'
import json, sys
mode, rnd, seen, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
j = json.load(open(path))
c, l = j["counts"], j["latency"]
by_cache = 1 - seen / c["gets"] if c["gets"] else 0
print(json.dumps({"mode": mode, "round": rnd, "rps": j["throughput_rps"], "p50": l["p50_us"],
                  "p99": l["p99_us"], "gets": c["gets"], "timeouts": c["timeouts"],
                  "hit_ratio": j["hit_ratio"], "by_cache": by_cache,
                  "stale": c["stale_reads"] + c["wrong_key"] + c["malformed"],
                  "napi": sys.argv[5]}))
EOF
        say "round $((r + 1))/$ROUNDS $mode: $(tail -1 "$WORK/results")"
    done
done

if [ "$PIPELINE" -gt 1 ]; then LOOP="$PIPELINE GETs in flight per thread (sendmmsg/recvmmsg)"; else LOOP="closed loop"; fi
DESC="Client: mcload, $THREADS threads on cores $CLIENT_CORES, $LOOP, GET only, $KEYS keys \
Zipf $ZIPF, $VSIZE-byte values, ${DURATION} s per run after ${WARMUP} s of warm-up; memcached \
(-t 1) on core(s) $MC_CORES, the run-datapath worker on core $SERVER_CORE, $SRV_IF's receive processing on core \
$([ "$RX_ON_SERVER" = 1 ] && echo "$SERVER_CORE (threaded NAPI + RPS)" || echo "of the sender (veth default)"); kernel $(uname -r), $(nproc) cores; \
modes alternating over $ROUNDS round(s)."
python3 - "$WORK/results" "$CMDLINE" "$MODES" "$DESC" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cmd, modes, desc = sys.argv[2], sys.argv[3].split(), sys.argv[4]
def med(xs):
    return statistics.median(xs) if xs else float("nan")
base = med([r["rps"] for r in rows if r["mode"] == "vanilla"])
names = {"vanilla": "(a) vanilla memcached", "kernel": "(b) cache.o in the kernel",
         "userspace": "(c) cache.o in run-datapath"}
print("Command: `" + cmd + "`  ")
print(desc)
print()
print("| mode | GET/s (median) | per round | p50 µs | p99 µs | answered by cache | timeouts | vs (a) | veth-srv NAPI defer/flush |")
print("|---|---:|---|---:|---:|---:|---:|---:|---|")
for m in modes:
    rs = [r for r in rows if r["mode"] == m]
    if not rs:
        continue
    rps = med([r["rps"] for r in rs])
    per = ", ".join("{:,.0f}".format(r["rps"]) for r in rs)
    ratio = "{:.2f}×".format(rps / base) if base > 0 else "n/a"
    print("| {} | {:,.0f} | {} | {:.0f} | {:.0f} | {:.1f} % | {} | {} | {} |".format(
        names[m], rps, per, med([r["p50"] for r in rs]), med([r["p99"] for r in rs]),
        100 * med([r["by_cache"] for r in rs]), sum(r["timeouts"] for r in rs), ratio,
        rs[0]["napi"]))
bad = sum(r["stale"] for r in rows)
if bad:
    print("\nWARNING: {} stale / wrong-key / malformed replies seen".format(bad))
EOF
