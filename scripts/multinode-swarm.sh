#!/usr/bin/env bash
# A real multi-node Docker swarm on one machine, for the gateway's multi-node tests
# (gateway/tests/swarm_multinode.rs calls this; it needs root).
#
#   scripts/multinode-swarm.sh up   DIR NODES   # NODES >= 2: node 1 is the manager, the rest workers
#   scripts/multinode-swarm.sh stop DIR I       # stop node I's engine (SIGTERM, wait)
#   scripts/multinode-swarm.sh start DIR I      # start node I's engine again
#   scripts/multinode-swarm.sh down DIR         # stop everything, remove namespaces and DIR
#
# Design: a swarm of its own, apart from the machine's (which other tests and people use).
# Each node is a dockerd in a network namespace created here (`tomsw<id>-n<I>`), with its own
# --data-root, --exec-root, --pidfile and unix socket under DIR, its own hostname (UTS
# namespace) and an address 10.231.<k>.<I>/24 on a veth whose other end is on a bridge in a hub
# namespace created here too. No address is added to the host's namespace, no iptables rule
# is written (--iptables=false), nothing is pulled: tom-workload:test is copied from the host
# engine into each node (docker save | docker load).
#
# The engines run in the host's mount namespace (nsenter --net, not `ip netns exec`, which
# remounts /sys and hides the cgroup hierarchy: dockerd then fails with "Devices cgroup isn't
# mounted"). Storage driver vfs: it works anywhere, and the test image is small.
#
# DIR/env is written for the tests: NODES, SOCK_<I>, ADDR_<I>, NODEID_<I>, NS_<I>.
set -euo pipefail

cmd=${1:?usage: $0 up|stop|start|down DIR [N]}
dir=${2:?usage: $0 up|stop|start|down DIR [N]}
image=${TOM_MULTINODE_IMAGE:-tom-workload:test}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "error: the multi-node swarm needs root (network namespaces, dockerd)" >&2
        exit 1
    fi
}

# A short id from DIR, so interface names stay within 15 characters and runs do not collide.
ident() { printf '%s' "$dir" | sha256sum | cut -c1-6; }
subnet() { echo $(( 0x$(ident | cut -c1-2) % 250 + 1 )); }

node_ns() { echo "tomsw$(ident)-n$1"; }
hub_ns() { echo "tomsw$(ident)-hub"; }

start_engine() {
    local i=$1 ns; ns=$(node_ns "$i")
    local nd="$dir/n$i"
    mkdir -p "$nd"
    echo '{}' >"$nd/daemon.json"
    rm -f "$nd/docker.sock"
    # shellcheck disable=SC2016
    nsenter --net="/run/netns/$ns" unshare --uts sh -c 'hostname "$0"; exec "$@"' "tomsw-n$i" \
        dockerd --config-file "$nd/daemon.json" --data-root "$nd/data" --exec-root "$nd/exec" \
        --pidfile "$nd/docker.pid" -H "unix://$nd/docker.sock" --iptables=false --ip-masq=false \
        --bridge=none --storage-driver=vfs --cgroup-parent="tomsw$(ident)-n$i" \
        >"$nd/dockerd.log" 2>&1 &
    for _ in $(seq 1 150); do
        if docker -H "unix://$nd/docker.sock" info >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "error: node $i's engine did not answer within 30 s; its log:" >&2
    tail -20 "$nd/dockerd.log" >&2
    return 1
}

stop_engine() {
    local i=$1 nd="$dir/n$1" pid
    [ -f "$nd/docker.pid" ] || return 0
    pid=$(cat "$nd/docker.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$nd/docker.pid"
    return 0
}

case "$cmd" in
up)
    need_root
    nodes=${3:?usage: $0 up DIR NODES}
    [ "$nodes" -ge 2 ] || { echo "error: at least 2 nodes" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    net=$(subnet)
    hub=$(hub_ns)
    ip netns add "$hub"
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    for i in $(seq 1 "$nodes"); do
        ns=$(node_ns "$i")
        ip netns add "$ns"
        ip link add "tomsw$(ident)h$i" type veth peer name "tomsw$(ident)v$i"
        ip link set "tomsw$(ident)h$i" netns "$hub"
        ip link set "tomsw$(ident)v$i" netns "$ns"
        ip -n "$hub" link set "tomsw$(ident)h$i" master br0 up
        ip -n "$ns" link set "tomsw$(ident)v$i" name eth0
        ip -n "$ns" addr add "10.231.$net.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done
    docker save "$image" -o "$dir/image.tar"
    for i in $(seq 1 "$nodes"); do start_engine "$i" & done
    wait
    sock() { echo "unix://$dir/n$1/docker.sock"; }
    docker -H "$(sock 1)" swarm init --advertise-addr "10.231.$net.1" \
        --listen-addr "10.231.$net.1:2377" >/dev/null
    token=$(docker -H "$(sock 1)" swarm join-token -q worker)
    {
        echo "NODES=$nodes"
        echo "JOIN_TOKEN=$token"
        echo "MANAGER_ADDR=10.231.$net.1:2377"
    } >"$dir/env"
    for i in $(seq 1 "$nodes"); do
        if [ "$i" -gt 1 ]; then
            docker -H "$(sock "$i")" swarm join --token "$token" \
                --advertise-addr "10.231.$net.$i" --listen-addr "10.231.$net.$i:2377" \
                "10.231.$net.1:2377" >/dev/null
        fi
        docker -H "$(sock "$i")" load -i "$dir/image.tar" >/dev/null
        {
            echo "SOCK_$i=$(sock "$i")"
            echo "ADDR_$i=10.231.$net.$i"
            echo "NS_$i=$(node_ns "$i")"
            echo "NODEID_$i=$(docker -H "$(sock "$i")" info --format '{{.Swarm.NodeID}}')"
        } >>"$dir/env"
    done
    echo "multi-node swarm up: $nodes nodes on 10.231.$net.0/24 (state in $dir)"
    ;;
stop)
    need_root
    stop_engine "${3:?node}"
    ;;
start)
    need_root
    start_engine "${3:?node}"
    ;;
down)
    [ -d "$dir" ] || exit 0
    set +e
    for nd in "$dir"/n*; do
        [ -d "$nd" ] || continue
        stop_engine "${nd##*/n}" &
    done
    wait
    # Engines leave their network-namespace bind mounts behind under the exec root.
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    for ns in $(ip netns list | awk '{print $1}' | grep "^tomsw$(ident)-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 up|stop|start|down DIR [N]" >&2
    exit 2
    ;;
esac
