#!/usr/bin/env bash
# A native Hyperledger Fabric 2.5 network for TOM's tests: no Docker, loopback only, every process
# a child tracked by PID, all state in one directory.
#
#   scripts/fabric-testnet.sh up [DIR]        start it (DIR: default a new temp dir); prints DIR
#   scripts/fabric-testnet.sh down DIR        stop every process it started and remove DIR
#                                             (TOM_FABRIC_KEEP=1 keeps DIR, e.g. to read logs/)
#   scripts/fabric-testnet.sh env DIR         print the environment file (source DIR/env.sh)
#   scripts/fabric-testnet.sh stop|kill|start DIR NAME   stop (SIGTERM), kill (SIGKILL) or
#                                             restart one process: orderer, peer0.org1,
#                                             peer1.org1, peer0.org2, cc.org1, cc.org2, or one
#                                             added with `launch`
#   scripts/fabric-testnet.sh launch DIR NAME CMD…   run CMD as a tracked process of the network
#
# The network: one Raft orderer joined to channel `tom` through the channel participation API
# (osnadmin), Org1MSP with peer0 and peer1, Org2MSP with peer0, TLS on every endpoint (mutual TLS
# between peers and chaincode), crypto
# material from cryptogen, the channel's genesis block from configtxgen with the project's
# network/configtx.yaml (same policies as the compose network; loopback endpoints, 250 ms batch
# timeout; gossip intervals shortened so discovery sees every peer within seconds). Each organisation's MSP trusts the fixture CA exactly as scripts/network-up.sh makes
# it (scripts/fixture-msp.sh). Peers use only the CCaaS external builder (vm.endpoint empty).
# TOM's chaincode, the tom-chaincode binary of this checkout (TOM_CHAINCODE_BIN, default
# target/debug/tom-chaincode), runs as one CCaaS process per organisation: cc.org1 serves Org1's
# peers, cc.org2 Org2's; each organisation installs its own package (scripts/package-chaincode.sh,
# connection.json naming its process) and the definition is committed with
# AND('Org1MSP.peer','Org2MSP.peer'). Ports are chosen free at run time.
#
# Fabric binaries: scripts/fabric-locate.sh (FABRIC_BIN, or the shared archive).
set -euo pipefail
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$SCRIPTS/.." && pwd)"
CHANNEL=tom
CC_NAME=tom
CC_LABEL=tom_0.1
POLICY="AND('Org1MSP.peer','Org2MSP.peer')"
PEERS=(peer0.org1 peer1.org1 peer0.org2)

die() { echo "fabric-testnet: $*" >&2; exit 1; }
log() { echo "fabric-testnet: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes: DIR/run/NAME.sh is the launcher (environment + exec), DIR/pids/NAME its PID,
# DIR/logs/NAME.log its output.

start_proc() {
    local dir="$1" name="$2"
    [ -x "$dir/run/$name.sh" ] || die "no process $name in $dir"
    # setsid: its own process group, so a terminal's Ctrl-C reaches only us, and we stop it.
    setsid "$dir/run/$name.sh" >>"$dir/logs/$name.log" 2>&1 < /dev/null &
    echo $! > "$dir/pids/$name"
}

proc_alive() {
    local dir="$1" name="$2" pid
    pid=$(cat "$dir/pids/$name" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null
}

stop_proc() {
    local dir="$1" name="$2" signal="${3:-TERM}" pid i
    pid=$(cat "$dir/pids/$name" 2>/dev/null) || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -"$signal" "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$i" = 100 ] && kill -KILL "$pid" 2>/dev/null
            sleep 0.1
        done
    fi
    rm -f "$dir/pids/$name"
}

# write_launcher DIR NAME [VAR=VALUE…] CMD…: DIR/run/NAME.sh runs CMD (exec env) with those
# variables added to the environment, so `start` can restart it exactly.
write_launcher() {
    local dir="$1" name="$2"; shift 2
    {
        echo '#!/usr/bin/env bash'
        local word
        printf 'exec env'
        for word in "$@"; do printf ' %q' "$word"; done
        echo
    } > "$dir/run/$name.sh"
    chmod +x "$dir/run/$name.sh"
}

# wait_port HOST:PORT SECONDS NAME DIR
wait_port() {
    local addr="$1" secs="$2" name="$3" dir="$4" i
    for i in $(seq 1 $((secs * 10))); do
        if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then return 0; fi
        proc_alive "$dir" "$name" || { tail -20 "$dir/logs/$name.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    tail -20 "$dir/logs/$name.log" >&2
    die "$name does not listen on $addr after ${secs}s"
}

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# ---------------------------------------------------------------------------------------------

cmd_up() {
    local dir="${1:-}"
    # shellcheck source=fabric-locate.sh
    source "$SCRIPTS/fabric-locate.sh"
    fabric_locate || die "no Fabric binaries: $FABRIC_MISSING"
    local ccbin="${TOM_CHAINCODE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/tom-chaincode}"
    [ -x "$ccbin" ] || die "no tom-chaincode binary at $ccbin (cargo build -p tom-chaincode, or set TOM_CHAINCODE_BIN)"
    if [ -z "$dir" ]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/tom-fabric.XXXXXX")"; fi
    mkdir -p "$dir"/{run,pids,logs,data,config,packages,blocks}
    dir="$(cd "$dir" && pwd)"
    # Whatever fails from here on stops what was started; the caller still owns DIR.
    trap 'log "up failed; stopping what was started (logs kept in $dir/logs)"; TOM_FABRIC_KEEP=1 cmd_down "$dir"' ERR
    local bin="$FABRIC_BIN_DIR"
    local started=$SECONDS

    # Ports: orderer (listen, admin, operations), per peer (listen, chaincode, operations),
    # per chaincode process.
    local ports
    read -r -a ports <<< "$(free_ports 14)"
    local ORDERER_PORT=${ports[0]} ORDERER_ADMIN_PORT=${ports[1]} ORDERER_OPS_PORT=${ports[2]}
    local P0O1=${ports[3]} P1O1=${ports[6]} P0O2=${ports[9]}
    local CC1_PORT=${ports[12]} CC2_PORT=${ports[13]}

    log "crypto material (cryptogen) in $dir"
    cat > "$dir/crypto-config.yaml" <<'YAML'
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS: [localhost, 127.0.0.1]
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    EnableNodeOUs: true
    Template: {Count: 2, SANS: [localhost, 127.0.0.1]}
    Specs: [{Hostname: cc, SANS: [localhost, 127.0.0.1]}]
    Users: {Count: 1}
  - Name: Org2
    Domain: org2.example.com
    EnableNodeOUs: true
    Template: {Count: 1, SANS: [localhost, 127.0.0.1]}
    Specs: [{Hostname: cc, SANS: [localhost, 127.0.0.1]}]
    Users: {Count: 1}
YAML
    "$bin/cryptogen" generate --config="$dir/crypto-config.yaml" --output="$dir/organizations" >/dev/null
    # shellcheck source=fixture-msp.sh
    source "$SCRIPTS/fixture-msp.sh"
    trust_fixture_cas "$REPO" "$dir/organizations"

    log "channel genesis block (configtxgen, network/configtx.yaml on loopback ports)"
    python3 - "$REPO/network/configtx.yaml" "$dir/configtx.yaml" "$ORDERER_PORT" "$P0O1" "$P0O2" <<'PY'
import sys
src, dst, orderer, p1, p2 = sys.argv[1:]
text = open(src).read()
def sub(old, new, count):
    global text
    assert text.count(old) == count, (old, text.count(old))
    text = text.replace(old, new)
sub("orderer.example.com:7050", f"127.0.0.1:{orderer}", 2)
sub("      - Host: orderer.example.com\n        Port: 7050", f"      - Host: 127.0.0.1\n        Port: {orderer}", 1)
sub("      - Host: peer0.org1.example.com\n        Port: 7051", f"      - Host: 127.0.0.1\n        Port: {p1}", 1)
sub("      - Host: peer0.org2.example.com\n        Port: 9051", f"      - Host: 127.0.0.1\n        Port: {p2}", 1)
sub("BatchTimeout: 1s", "BatchTimeout: 250ms", 1)
open(dst, "w").write(text)
PY
    FABRIC_CFG_PATH="$dir" "$bin/configtxgen" -profile TomChannel -channelID "$CHANNEL" \
        -outputBlock "$dir/blocks/genesis.block" 2>"$dir/logs/configtxgen.log" \
        || { cat "$dir/logs/configtxgen.log" >&2; false; }

    # Fabric's sample core.yaml/orderer.yaml; the CCaaS builder at its unpacked path.
    cp "$FABRIC_SAMPLE_CONFIG/core.yaml" "$FABRIC_SAMPLE_CONFIG/orderer.yaml" "$dir/config/"
    python3 - "$dir/config/core.yaml" "$FABRIC_BUILDER_DIR" <<'PY'
import sys
path, builder = sys.argv[1:]
text = open(path).read()
old = "path: /opt/hyperledger/ccaas_builder"
assert text.count(old) == 1, "core.yaml has no ccaas_builder entry"
open(path, "w").write(text.replace(old, "path: " + builder))
PY
    local cfg="$dir/config"
    local ord="$dir/organizations/ordererOrganizations/example.com/orderers/orderer.example.com"

    log "orderer on 127.0.0.1:$ORDERER_PORT (admin $ORDERER_ADMIN_PORT)"
    write_launcher "$dir" orderer FABRIC_CFG_PATH="$cfg" FABRIC_LOGGING_SPEC=INFO \
        ORDERER_GENERAL_LISTENADDRESS=127.0.0.1 ORDERER_GENERAL_LISTENPORT="$ORDERER_PORT" \
        ORDERER_GENERAL_LOCALMSPID=OrdererMSP ORDERER_GENERAL_LOCALMSPDIR="$ord/msp" \
        ORDERER_GENERAL_TLS_ENABLED=true ORDERER_GENERAL_TLS_PRIVATEKEY="$ord/tls/server.key" \
        ORDERER_GENERAL_TLS_CERTIFICATE="$ord/tls/server.crt" ORDERER_GENERAL_TLS_ROOTCAS="[$ord/tls/ca.crt]" \
        ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE="$ord/tls/server.crt" \
        ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY="$ord/tls/server.key" \
        ORDERER_GENERAL_CLUSTER_ROOTCAS="[$ord/tls/ca.crt]" \
        ORDERER_GENERAL_BOOTSTRAPMETHOD=none ORDERER_CHANNELPARTICIPATION_ENABLED=true \
        ORDERER_ADMIN_LISTENADDRESS="127.0.0.1:$ORDERER_ADMIN_PORT" ORDERER_ADMIN_TLS_ENABLED=true \
        ORDERER_ADMIN_TLS_CERTIFICATE="$ord/tls/server.crt" ORDERER_ADMIN_TLS_PRIVATEKEY="$ord/tls/server.key" \
        ORDERER_ADMIN_TLS_ROOTCAS="[$ord/tls/ca.crt]" ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED=true \
        ORDERER_ADMIN_TLS_CLIENTROOTCAS="[$ord/tls/ca.crt]" \
        ORDERER_OPERATIONS_LISTENADDRESS="127.0.0.1:$ORDERER_OPS_PORT" ORDERER_METRICS_PROVIDER=disabled \
        ORDERER_FILELEDGER_LOCATION="$dir/data/orderer/ledger" \
        ORDERER_CONSENSUS_WALDIR="$dir/data/orderer/etcdraft/wal" \
        ORDERER_CONSENSUS_SNAPDIR="$dir/data/orderer/etcdraft/snapshot" \
        "$bin/orderer"
    start_proc "$dir" orderer

    local i name org n port
    for i in 0 1 2; do
        name=${PEERS[$i]}
        org=${name#*.}
        n=${org#org}
        port=${ports[$((3 + 3 * i))]}
        local pdir="$dir/organizations/peerOrganizations/$org.example.com/peers/${name%%.*}.$org.example.com"
        local bootstrap="127.0.0.1:$port"
        [ "$name" = peer1.org1 ] && bootstrap="127.0.0.1:$P0O1"
        write_launcher "$dir" "$name" FABRIC_CFG_PATH="$cfg" FABRIC_LOGGING_SPEC=INFO \
            CORE_PEER_ID="$name.example.com" CORE_PEER_LOCALMSPID="Org${n}MSP" CORE_PEER_MSPCONFIGPATH="$pdir/msp" \
            CORE_PEER_ADDRESS="127.0.0.1:$port" CORE_PEER_LISTENADDRESS="127.0.0.1:$port" \
            CORE_PEER_CHAINCODEADDRESS="127.0.0.1:${ports[$((4 + 3 * i))]}" \
            CORE_PEER_CHAINCODELISTENADDRESS="127.0.0.1:${ports[$((4 + 3 * i))]}" \
            CORE_PEER_GOSSIP_BOOTSTRAP="$bootstrap" CORE_PEER_GOSSIP_EXTERNALENDPOINT="127.0.0.1:$port" \
            CORE_PEER_TLS_ENABLED=true CORE_PEER_TLS_CERT_FILE="$pdir/tls/server.crt" \
            CORE_PEER_TLS_KEY_FILE="$pdir/tls/server.key" CORE_PEER_TLS_ROOTCERT_FILE="$pdir/tls/ca.crt" \
            CORE_PEER_FILESYSTEMPATH="$dir/data/$name" CORE_LEDGER_SNAPSHOTS_ROOTDIR="$dir/data/$name/snapshots" \
            CORE_OPERATIONS_LISTENADDRESS="127.0.0.1:${ports[$((5 + 3 * i))]}" CORE_METRICS_PROVIDER=disabled \
            CORE_PEER_PROFILE_ENABLED=false CORE_VM_ENDPOINT="" CORE_CHAINCODE_EXECUTETIMEOUT=30s \
            CORE_LEDGER_HISTORY_ENABLEHISTORYDATABASE=true \
            CORE_PEER_GOSSIP_ALIVETIMEINTERVAL=2s CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT=10s \
            CORE_PEER_GOSSIP_RECONNECTINTERVAL=2s CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL=1s \
            "$bin/peer" node start
        start_proc "$dir" "$name"
    done

    # The environment the tests and the peer CLI use.
    cat > "$dir/env.sh" <<EOF
# shellcheck shell=bash
# Written by scripts/fabric-testnet.sh up: the native test network in this directory.
TOM_FABRIC_DIR=$(printf %q "$dir")
FABRIC_BIN_DIR=$(printf %q "$bin")
export FABRIC_CFG_PATH=$(printf %q "$cfg")
CHANNEL=$CHANNEL
CC_NAME=$CC_NAME
ORDERER_ADDRESS=127.0.0.1:$ORDERER_PORT
ORDERER_ADMIN_ADDRESS=127.0.0.1:$ORDERER_ADMIN_PORT
ORDERER_TLS_CA=\$TOM_FABRIC_DIR/organizations/ordererOrganizations/example.com/orderers/orderer.example.com/tls/ca.crt
declare -gA PEER_ADDRESS=([peer0.org1]=127.0.0.1:$P0O1 [peer1.org1]=127.0.0.1:$P1O1 [peer0.org2]=127.0.0.1:$P0O2)
declare -gA CC_ADDRESS=([org1]=127.0.0.1:$CC1_PORT [org2]=127.0.0.1:$CC2_PORT)
# peer_tls_ca PEER: the CA of PEER's TLS certificate.
peer_tls_ca() {
    local org=\${1#*.}
    echo "\$TOM_FABRIC_DIR/organizations/peerOrganizations/\$org.example.com/peers/\${1%%.*}.\$org.example.com/tls/ca.crt"
}
# as PEER [USER] CMD…: run a Fabric CLI command against PEER as USER of its organisation
# (default its cryptogen admin; a fixture identity name such as auditor selects users/<name>@tom).
as() {
    local peer=\$1; shift
    local org=\${peer#*.} user=Admin@\${peer#*.}.example.com
    case "\${1:-}" in peer|osnadmin|configtxlator) ;; *) user="\$1@tom"; shift ;; esac
    local cmd=\$1; shift
    CORE_PEER_TLS_ENABLED=true CORE_PEER_LOCALMSPID="Org\${org#org}MSP" \\
    CORE_PEER_TLS_ROOTCERT_FILE="\$(peer_tls_ca "\$peer")" \\
    CORE_PEER_MSPCONFIGPATH="\$TOM_FABRIC_DIR/organizations/peerOrganizations/\$org.example.com/users/\$user/msp" \\
    CORE_PEER_ADDRESS="\${PEER_ADDRESS[\$peer]}" "\$FABRIC_BIN_DIR/\$cmd" "\$@"
}
EOF
    # shellcheck source=/dev/null
    source "$dir/env.sh"

    wait_port "$ORDERER_ADDRESS" 30 orderer "$dir"
    wait_port "$ORDERER_ADMIN_ADDRESS" 30 orderer "$dir"
    log "orderer joins $CHANNEL (osnadmin)"
    for i in $(seq 1 20); do
        "$bin/osnadmin" channel join --channelID "$CHANNEL" --config-block "$dir/blocks/genesis.block" \
            -o "$ORDERER_ADMIN_ADDRESS" --ca-file "$ord/tls/ca.crt" --client-cert "$ord/tls/server.crt" \
            --client-key "$ord/tls/server.key" >> "$dir/logs/osnadmin.log" 2>&1 && break
        [ "$i" = 20 ] && { cat "$dir/logs/osnadmin.log" >&2; die "the orderer did not join $CHANNEL"; }
        sleep 0.5
    done
    for name in "${PEERS[@]}"; do
        wait_port "${PEER_ADDRESS[$name]}" 30 "$name" "$dir"
        log "$name (${PEER_ADDRESS[$name]}) joins $CHANNEL"
        for i in $(seq 1 20); do
            as "$name" peer channel join -b "$dir/blocks/genesis.block" >> "$dir/logs/cli.log" 2>&1 && break
            [ "$i" = 20 ] && { tail -5 "$dir/logs/cli.log" >&2; die "$name did not join $CHANNEL"; }
            sleep 0.5
        done
    done

    log "chaincode: one CCaaS package and tom-chaincode process per organisation"
    local id calc o
    for org in org1 org2; do
        # Mutual TLS between peers and chaincode: the server certificate of cryptogen's node
        # cc.orgN (SAN 127.0.0.1), peers presenting the org admin's TLS client certificate.
        o="$dir/organizations/peerOrganizations/$org.example.com"
        id=$(bash "$SCRIPTS/package-chaincode.sh" --label "$CC_LABEL" --address "${CC_ADDRESS[$org]}" \
            --out "$dir/packages/$org" --tls-root-cert "$o/peers/cc.$org.example.com/tls/ca.crt" \
            --client-cert "$o/users/Admin@$org.example.com/tls/client.crt" \
            --client-key "$o/users/Admin@$org.example.com/tls/client.key" 2>/dev/null)
        calc=$("$bin/peer" lifecycle chaincode calculatepackageid "$dir/packages/$org/$CC_LABEL.tar.gz")
        [ "$id" = "$calc" ] || die "package id $id differs from calculatepackageid's $calc"
        echo "PACKAGE_ID_${org^^}=$id" >> "$dir/env.sh"
        write_launcher "$dir" "cc.$org" CHAINCODE_ID="$id" CHAINCODE_SERVER_ADDRESS="${CC_ADDRESS[$org]}" \
            CHAINCODE_TLS_CERT="$o/peers/cc.$org.example.com/tls/server.crt" \
            CHAINCODE_TLS_KEY="$o/peers/cc.$org.example.com/tls/server.key" \
            CHAINCODE_CLIENT_CA_CERT="$o/tlsca/tlsca.$org.example.com-cert.pem" RUST_LOG=info "$ccbin"
        start_proc "$dir" "cc.$org"
    done
    # shellcheck source=/dev/null
    source "$dir/env.sh"
    for name in "${PEERS[@]}"; do
        org=${name#*.}
        as "$name" peer lifecycle chaincode install "$dir/packages/$org/$CC_LABEL.tar.gz" >> "$dir/logs/cli.log" 2>&1 \
            || { tail -5 "$dir/logs/cli.log" >&2; false; }
    done
    wait_port "${CC_ADDRESS[org1]}" 30 cc.org1 "$dir"
    wait_port "${CC_ADDRESS[org2]}" 30 cc.org2 "$dir"
    local orderer=(-o "$ORDERER_ADDRESS" --tls --cafile "$ORDERER_TLS_CA")
    for name in peer0.org1 peer0.org2; do
        org=${name#*.}
        local var="PACKAGE_ID_${org^^}"
        # The first transactions may meet an orderer still electing its Raft leader
        # ("SERVICE_UNAVAILABLE -- no Raft leader"): retry for a bounded time.
        for i in $(seq 1 40); do
            as "$name" peer lifecycle chaincode approveformyorg "${orderer[@]}" --channelID "$CHANNEL" \
                --name "$CC_NAME" --version 0.1 --package-id "${!var}" --sequence 1 \
                --signature-policy "$POLICY" >> "$dir/logs/cli.log" 2>&1 && break
            [ "$i" = 40 ] && { tail -5 "$dir/logs/cli.log" >&2; die "$name could not approve $CC_NAME"; }
            sleep 0.5
        done
    done
    log "commit $CC_NAME with $POLICY"
    for i in $(seq 1 40); do
        as peer0.org1 peer lifecycle chaincode commit "${orderer[@]}" --channelID "$CHANNEL" --name "$CC_NAME" \
            --version 0.1 --sequence 1 --signature-policy "$POLICY" \
            --peerAddresses "${PEER_ADDRESS[peer0.org1]}" --tlsRootCertFiles "$(peer_tls_ca peer0.org1)" \
            --peerAddresses "${PEER_ADDRESS[peer0.org2]}" --tlsRootCertFiles "$(peer_tls_ca peer0.org2)" \
            >> "$dir/logs/cli.log" 2>&1 && break
        [ "$i" = 40 ] && { tail -5 "$dir/logs/cli.log" >&2; die "$CC_NAME could not be committed"; }
        sleep 0.5
    done
    # Every peer (peer1.org1 gets the block by gossip) answers through its organisation's process.
    for name in "${PEERS[@]}"; do
        for i in $(seq 1 100); do
            if as "$name" peer chaincode query -C "$CHANNEL" -n "$CC_NAME" \
                -c '{"Args":["org.hyperledger.fabric:GetMetadata"]}' > /dev/null 2>> "$dir/logs/cli.log"; then
                break
            fi
            [ "$i" = 100 ] && die "$name: the chaincode does not answer (see $dir/logs)"
            sleep 0.2
        done
    done
    # The Fabric Gateway plans endorsements from discovery, which knows the other organisation's
    # peer only once gossip (through the anchor peers) has spread membership and chaincode info.
    log "waiting for discovery to offer endorsers of both organisations"
    local admin="$dir/organizations/peerOrganizations/org1.example.com/users/Admin@org1.example.com/msp"
    for i in $(seq 1 120); do
        if "$bin/discover" --peerTLSCA "$(peer_tls_ca peer0.org1)" --userKey "$admin/keystore/priv_sk" \
            --userCert "$admin/signcerts/Admin@org1.example.com-cert.pem" --MSP Org1MSP \
            endorsers --channel "$CHANNEL" --chaincode "$CC_NAME" --server "${PEER_ADDRESS[peer0.org1]}" \
            > "$dir/logs/discover.log" 2>&1 && grep -q Org2MSP "$dir/logs/discover.log"; then
            break
        fi
        [ "$i" = 120 ] && { cat "$dir/logs/discover.log" >&2; die "discovery never offered Org2's peer"; }
        sleep 0.5
    done
    trap - ERR
    log "up in $((SECONDS - started))s: channel $CHANNEL, chaincode $CC_NAME; source $dir/env.sh"
    echo "$dir"
}

cmd_down() {
    local dir="${1:?down needs DIR}" name
    [ -d "$dir/pids" ] || { log "nothing to stop in $dir"; return 0; }
    # Clients first (gateways, chaincode), then peers, then the orderer.
    for name in $(ls "$dir/pids"); do
        case "$name" in orderer|peer*) ;; *) stop_proc "$dir" "$name" ;; esac
    done
    for name in "${PEERS[@]}" orderer; do stop_proc "$dir" "$name"; done
    if [ "${TOM_FABRIC_KEEP:-0}" = 1 ]; then
        log "stopped; kept $dir"
    else
        rm -rf "$dir"
        log "stopped; removed $dir"
    fi
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    env) cat "${2:?env needs DIR}/env.sh" ;;
    stop) stop_proc "${2:?DIR}" "${3:?NAME}" TERM ;;
    kill) stop_proc "${2:?DIR}" "${3:?NAME}" KILL ;;
    start) start_proc "${2:?DIR}" "${3:?NAME}" ;;
    launch)
        dir="${2:?DIR}" name="${3:?NAME}"; shift 3
        write_launcher "$dir" "$name" "$@"
        start_proc "$dir" "$name" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
