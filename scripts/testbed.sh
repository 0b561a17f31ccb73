#!/usr/bin/env bash
# Testbed: two network namespaces joined by a multi-queue veth pair, addresses only in the
# benchmarking range 198.18.0.0/15 (and 2001:2::/48 with --ipv6), optionally a memcached server
# (UDP enabled) in the server namespace.
#
#   scripts/testbed.sh up     [--name PREFIX] [--queues N] [--memcached] [--ipv6] [--cli-xdp OBJ]
#   scripts/testbed.sh down   [--name PREFIX]
#   scripts/testbed.sh status [--name PREFIX]
#   scripts/testbed.sh exec   cli|srv [--name PREFIX] -- CMD [ARG...]
#
# Layout (PREFIX defaults to "uxdp"):
#   namespace PREFIX-cli: veth-cli 02:00:c6:12:00:01 198.18.0.1/24 [2001:2::1/64]
#   namespace PREFIX-srv: veth-srv 02:00:c6:12:00:02 198.18.0.2/24 [2001:2::2/64]
#   memcached (--memcached): 198.18.0.2 UDP+TCP 11211, pidfile /run/userxdp/PREFIX/memcached/
# The veth ends are created directly inside their namespaces, so the interface names are fixed
# (no 15-character IFNAMSIZ problem, whatever the prefix) and several testbeds with different
# prefixes can be up at once. Nothing is ever created in the host's namespace.
#
# Choices (see DESIGN.md "AF_XDP on veth"):
#   - tx/rx checksum offload, TSO, GSO and VLAN offloads off on both ends: transmit checksum
#     offload leaves partial sums that AF_XDP/XDP would see, and VLAN offload hides tags from XDP.
#   - GRO off on veth-srv (XDP/AF_XDP side sees each frame as sent), GRO on on veth-cli (NAPI on
#     the client). But on this kernel (6.18) GRO is NOT enough for kernel XDP_TX/XDP_REDIRECT
#     frames from veth-srv to reach the client promptly: they are queued on veth-cli's ring, yet
#     its NAPI is only kicked when veth-cli has an XDP program, so they arrive only when other
#     traffic wakes it (seen: 5 XDP_TX'd pings sat there until a later ping flushed them). For
#     kernel XDP_TX/REDIRECT tests, pass --cli-xdp OBJ (an XDP_PASS object, section "xdp", e.g.
#     xdp_pass.o) to attach it natively to veth-cli. AF_XDP TX (copy mode) does not need it: it
#     goes through veth's ndo_start_xmit, which schedules the peer's NAPI itself.
#   - veth-srv: napi_defer_hard_irqs=2, gro_flush_timeout=200000 (the setting under which a
#     busy-polling AF_XDP worker kept up with the offered load on this machine kind).
#   - Static (permanent) neighbour entries both ways: no ARP/ND traffic ever appears on the link,
#     so tests can count frames exactly and the datapath never has to pass ARP to the kernel.
#   - IPv6 is disabled in both namespaces unless --ipv6 (router solicitations and MLD reports
#     would otherwise appear on the link at random times).
#   - bpffs: `ip netns exec` (and `ip -n`) remount /sys, hiding the host's /sys/fs/bpf. `exec`
#     mounts a private bpffs instance on /sys/fs/bpf for its command (pins live as long as that
#     process tree and are not shared). To pin into the HOST's bpffs, enter only the network
#     namespace instead: `nsenter --net=/run/netns/PREFIX-srv CMD` (then /sys/class/net shows
#     the host's devices, not the namespace's). No bpffs is bind-mounted anywhere on purpose:
#     iproute2's ELF loader (`ip -n NS link set dev X xdp obj ...`) pins its globals into the
#     first bpffs it finds in /proc/mounts, which would be another testbed's bind mount.
#
# Output: narration on stderr; KEY=value lines on stdout (`eval "$(scripts/testbed.sh up)"`).
# Exit status: 0 ok; 1 failure; 77 this host cannot run the testbed (not root, tool missing):
# callers such as tests skip on 77. `status` exits 3 when the testbed is not (fully) up.
# `up` first tears down any leftover testbed of the same prefix, and tears down again on failure.
# `down` kills every process left inside the two namespaces (memcached first, by its pidfile),
# deletes the namespaces (which deletes the veth pair and detaches any XDP program), and is a
# no-op when nothing is there.
set -euo pipefail

SKIP=77
cmd=${1:-}
[ $# -gt 0 ] && shift
PREFIX=uxdp
QUEUES=2
MEMCACHED=0
IPV6=0
CLI_XDP=""
side=""
exec_argv=()

say() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf 'testbed: %s\n' "$*" >&2; exit 1; }
unavailable() { printf 'testbed: %s\n' "$*" >&2; exit "$SKIP"; }
usage() {
    sed -n '6,9p' "$0" | sed 's/^# *//' >&2
    exit 1
}

if [ "$cmd" = exec ]; then
    side=${1:-}
    [ $# -gt 0 ] && shift
    case "$side" in cli | srv) ;; *) die "exec: first argument must be cli or srv" ;; esac
fi
while [ $# -gt 0 ]; do
    case "$1" in
    --name) PREFIX=${2:?--name needs a value}; shift 2 ;;
    --queues) QUEUES=${2:?--queues needs a value}; shift 2 ;;
    --memcached) MEMCACHED=1; shift ;;
    --ipv6) IPV6=1; shift ;;
    --cli-xdp) CLI_XDP=${2:?--cli-xdp needs an object file}; shift 2 ;;
    --) shift; exec_argv=("$@"); break ;;
    -h | --help) usage ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
done
case "$cmd" in up | down | status | exec) ;; *) usage ;; esac
[ -z "$CLI_XDP" ] || [ -f "$CLI_XDP" ] || die "--cli-xdp: no such file: $CLI_XDP"
[[ "$PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
    die "bad --name '$PREFIX': 1-40 characters of [A-Za-z0-9_.-]"
[[ "$QUEUES" =~ ^[0-9]+$ ]] && [ "$QUEUES" -ge 1 ] && [ "$QUEUES" -le 64 ] ||
    die "bad --queues '$QUEUES': 1..64"

CLI_NS=$PREFIX-cli
SRV_NS=$PREFIX-srv
CLI_IF=veth-cli
SRV_IF=veth-srv
CLI_MAC=02:00:c6:12:00:01
SRV_MAC=02:00:c6:12:00:02
CLI_IP4=198.18.0.1
SRV_IP4=198.18.0.2
IP4_PREFIXLEN=24
CLI_IP6=2001:2::1
SRV_IP6=2001:2::2
IP6_PREFIXLEN=64
MC_PORT=11211
RUNDIR=/run/userxdp/$PREFIX
MC_DIR=$RUNDIR/memcached
MC_PIDFILE=$MC_DIR/memcached.pid

# tool -> Debian package that provides it.
need() {
    [ "$(id -u)" -eq 0 ] || unavailable "must run as root (network namespaces, ethtool, sysfs)"
    local t pkg
    for t in "$@"; do
        case "$t" in
        ip) pkg=iproute2 ;; ethtool) pkg=ethtool ;; memcached) pkg=memcached ;;
        timeout) pkg=coreutils ;; mountpoint) pkg=util-linux ;; *) pkg="?" ;;
        esac
        command -v "$t" >/dev/null || unavailable "'$t' not found: install Debian package $pkg (scripts/setup.sh does)"
    done
}

ns_exists() { [ -e "/run/netns/$1" ]; }
in_ns() { local ns=$1; shift; timeout 10 ip netns exec "$ns" "$@"; }

# True while pid runs (a zombie, dead but not yet reaped by its parent, does not count).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Kills one pid politely, then hard after 2 s. Only called for pids in our namespaces/pidfile.
kill_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 20); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_memcached() {
    [ -f "$MC_PIDFILE" ] || return 0
    local pid
    pid=$(cat "$MC_PIDFILE" 2>/dev/null || true)
    # The pid may have been reused since: only kill it if it still is a memcached.
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" && [ "$(cat "/proc/$pid/comm")" = memcached ]; then
        say "stopping memcached (pid $pid)"
        kill_pid "$pid"
    fi
    rm -f "$MC_PIDFILE"
}

down() {
    local ns pid
    stop_memcached
    for ns in "$SRV_NS" "$CLI_NS"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            say "killing pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone)) left in $ns"
            kill_pid "$pid"
        done
        ip netns del "$ns"
        say "deleted namespace $ns"
    done
    rm -rf "$RUNDIR"
    rmdir /run/userxdp 2>/dev/null || true
}

# Sends a memcached UDP "version" from the client namespace; true when an answer comes back.
memcached_answers() {
    local out
    out=$(in_ns "$CLI_NS" timeout 1 bash -c '
        exec 3<>/dev/udp/'"$SRV_IP4/$MC_PORT"'
        printf "\x00\x01\x00\x00\x00\x01\x00\x00version\r\n" >&3
        dd bs=4096 count=1 status=none <&3' 2>/dev/null | tr -d '\0') || true
    [[ "$out" == *VERSION\ * ]]
}

start_memcached() {
    mkdir -p "$MC_DIR"
    # memcached writes its pidfile after dropping to the unprivileged user.
    chown nobody "$MC_DIR"
    in_ns "$SRV_NS" memcached -d -P "$MC_PIDFILE" -U "$MC_PORT" -p "$MC_PORT" -l "$SRV_IP4" \
        -u nobody -t 1 -m 64
    local i
    for i in $(seq 50); do
        if [ -s "$MC_PIDFILE" ] && memcached_answers; then
            say "memcached pid $(cat "$MC_PIDFILE") answers on udp+tcp $SRV_IP4:$MC_PORT (in $SRV_NS)"
            return 0
        fi
        sleep 0.1
    done
    die "memcached did not answer a UDP 'version' within 5 s"
}

setup_end() { # ns ifname mac ip4 ip6 peer_mac peer_ip4 peer_ip6 gro
    local ns=$1 dev=$2 ip4=$4 ip6=$5 pmac=$6 pip4=$7 pip6=$8 gro=$9
    in_ns "$ns" ethtool -K "$dev" tx off rx off tso off gso off txvlan off rxvlan off gro "$gro" \
        >/dev/null
    if [ "$IPV6" -eq 1 ]; then
        ip -n "$ns" -6 addr add "$ip6/$IP6_PREFIXLEN" dev "$dev" nodad
        ip -n "$ns" -6 neigh replace "$pip6" lladdr "$pmac" dev "$dev" nud permanent
    else
        in_ns "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 &&
            echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'
    fi
    ip -n "$ns" addr add "$ip4/$IP4_PREFIXLEN" dev "$dev"
    ip -n "$ns" neigh replace "$pip4" lladdr "$pmac" dev "$dev" nud permanent
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$dev" up
}

# The kernel publishes operstate "up" asynchronously (linkwatch, up to ~1 s after carrier).
wait_operstate_up() { # ns dev
    local i
    for i in $(seq 50); do
        [ "$(in_ns "$1" cat "/sys/class/net/$2/operstate")" = up ] && return 0
        sleep 0.1
    done
    die "$2 in $1 not up after 5 s"
}

set_channels() { # ns dev
    local cur
    cur=$(in_ns "$1" ethtool -l "$2" | awk '/Current hardware settings/ {c=1} c && /^RX:/ {print $2; exit}')
    [ "$cur" = "$QUEUES" ] || in_ns "$1" ethtool -L "$2" rx "$QUEUES" tx "$QUEUES"
}

print_keys() {
    local v6cli="" v6srv="" mcport="" mcpid=""
    [ "$IPV6" -eq 1 ] && { v6cli=$CLI_IP6; v6srv=$SRV_IP6; }
    [ "$MEMCACHED" -eq 1 ] && { mcport=$MC_PORT; mcpid=$(cat "$MC_PIDFILE"); }
    cat <<EOF
PREFIX=$PREFIX
CLI_NS=$CLI_NS
SRV_NS=$SRV_NS
CLI_IF=$CLI_IF
SRV_IF=$SRV_IF
CLI_MAC=$CLI_MAC
SRV_MAC=$SRV_MAC
CLI_IP4=$CLI_IP4
SRV_IP4=$SRV_IP4
IP4_PREFIXLEN=$IP4_PREFIXLEN
CLI_IP6=$v6cli
SRV_IP6=$v6srv
QUEUES=$QUEUES
MEMCACHED_PORT=$mcport
MEMCACHED_PID=$mcpid
EOF
    printf 'CLI_XDP=%q\n' "$CLI_XDP" # the one caller-chosen value: quoted for eval
}

up() {
    local tools=(ip ethtool timeout mountpoint)
    [ "$MEMCACHED" -eq 1 ] && tools+=(memcached)
    need "${tools[@]}"
    if ns_exists "$CLI_NS" || ns_exists "$SRV_NS" || [ -d "$RUNDIR" ]; then
        say "removing a leftover testbed '$PREFIX' first"
        down
    fi
    up_done=0
    # Any failure from here on (set -e, die) leaves through this trap: never half a testbed.
    trap 'rc=$?; if [ "$up_done" -eq 0 ]; then say "up failed (status $rc): tearing down"; down || true; fi' EXIT
    mkdir -p "$RUNDIR"
    ip netns add "$CLI_NS"
    ip netns add "$SRV_NS"
    ip -n "$CLI_NS" link add "$CLI_IF" numrxqueues "$QUEUES" numtxqueues "$QUEUES" \
        address "$CLI_MAC" type veth peer name "$SRV_IF" netns "$SRV_NS" \
        numrxqueues "$QUEUES" numtxqueues "$QUEUES" address "$SRV_MAC"
    set_channels "$CLI_NS" "$CLI_IF"
    set_channels "$SRV_NS" "$SRV_IF"
    say "namespaces $CLI_NS, $SRV_NS; veth $CLI_IF <-> $SRV_IF with $QUEUES rx/tx queues"
    setup_end "$CLI_NS" "$CLI_IF" "$CLI_MAC" "$CLI_IP4" "$CLI_IP6" "$SRV_MAC" "$SRV_IP4" "$SRV_IP6" on
    setup_end "$SRV_NS" "$SRV_IF" "$SRV_MAC" "$SRV_IP4" "$SRV_IP6" "$CLI_MAC" "$CLI_IP4" "$CLI_IP6" off
    in_ns "$SRV_NS" sh -c "echo 2 > /sys/class/net/$SRV_IF/napi_defer_hard_irqs &&
        echo 200000 > /sys/class/net/$SRV_IF/gro_flush_timeout"
    wait_operstate_up "$CLI_NS" "$CLI_IF"
    wait_operstate_up "$SRV_NS" "$SRV_IF"
    say "$CLI_IF $CLI_MAC $CLI_IP4/$IP4_PREFIXLEN; $SRV_IF $SRV_MAC $SRV_IP4/$IP4_PREFIXLEN;" \
        "ipv6 $([ "$IPV6" -eq 1 ] && echo "$CLI_IP6, $SRV_IP6" || echo off); static neighbours"
    say "offloads: tx/rx csum, tso, gso, vlan off on both; gro on $CLI_IF only;" \
        "$SRV_IF napi_defer_hard_irqs=2 gro_flush_timeout=200000"
    if [ -n "$CLI_XDP" ]; then
        ip -n "$CLI_NS" link set dev "$CLI_IF" xdpdrv obj "$CLI_XDP" sec xdp
        say "attached $CLI_XDP (section xdp, native) to $CLI_IF"
    fi
    [ "$MEMCACHED" -eq 1 ] && start_memcached
    print_keys
    up_done=1
}

status() {
    local ns rc=0 pid
    for ns in "$CLI_NS" "$SRV_NS"; do
        if ! ns_exists "$ns"; then
            echo "$ns: absent"
            rc=3
            continue
        fi
        echo "$ns:"
        ip -n "$ns" -br addr show | sed 's/^/  /'
        local dev=$CLI_IF
        [ "$ns" = "$SRV_NS" ] && dev=$SRV_IF
        if ip -n "$ns" link show "$dev" >/dev/null 2>&1; then
            echo "  queues: $(in_ns "$ns" ls "/sys/class/net/$dev/queues" | tr '\n' ' ')"
            echo "  offloads: $(in_ns "$ns" ethtool -k "$dev" | grep -E '^(rx-checksumming|tx-checksumming|generic-receive-offload):' | tr -s '\n\t ' ' ')"
            ip -n "$ns" link show "$dev" | grep -oE 'prog/xdp[a-z]* id [0-9]+' | sed 's/^/  /' || true
        else
            echo "  $dev missing"
            rc=3
        fi
        pid=$(ip netns pids "$ns" | tr '\n' ' ')
        [ -n "$pid" ] && echo "  processes: $pid"
    done
    if [ -f "$MC_PIDFILE" ]; then
        pid=$(cat "$MC_PIDFILE")
        if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = memcached ]; then
            echo "memcached: pid $pid on $SRV_IP4:$MC_PORT"
        else
            echo "memcached: pidfile says $pid, not running"
        fi
    fi
    return "$rc"
}

run_exec() {
    [ ${#exec_argv[@]} -gt 0 ] || die "exec: no command given (exec cli|srv [--name P] -- CMD...)"
    local ns=$CLI_NS
    [ "$side" = srv ] && ns=$SRV_NS
    ns_exists "$ns" || die "namespace $ns does not exist (run: $0 up --name $PREFIX)"
    # Not bounded on purpose: the command is the caller's (e.g. a datapath run).
    exec ip netns exec "$ns" sh -c '
        mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
        exec "$@"' sh "${exec_argv[@]}"
}

case "$cmd" in
up) up ;;
down)
    need ip timeout mountpoint
    down
    say "testbed '$PREFIX' is down"
    ;;
status)
    need ip ethtool timeout mountpoint
    status
    ;;
exec)
    need ip mountpoint
    run_exec
    ;;
esac
