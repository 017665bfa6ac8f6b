# shellcheck shell=bash
# Shared by scripts/network-*.sh and deploy-chaincode.sh (sourced, not run): the compose
# command, and `in_cli ORG CMD…` which runs a Fabric CLI command in the tools container as the
# given organisation's admin (ORG = 1 or 2), with TLS to that organisation's peer.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHANNEL="${CHANNEL:-tom}"
CHAINCODE_NAME="${CHAINCODE_NAME:-tom}"
FABRIC_VERSION="${FABRIC_VERSION:-2.5}"
# The images (docker-compose.yaml reads the same variables): the official ones by default, or
# images laid out like them, e.g. TOM's local tom-fabric-*:2.5.12 (scripts/setup/55-fabric-images.sh).
export FABRIC_ORDERER_IMAGE="${FABRIC_ORDERER_IMAGE:-hyperledger/fabric-orderer:$FABRIC_VERSION}"
export FABRIC_PEER_IMAGE="${FABRIC_PEER_IMAGE:-hyperledger/fabric-peer:$FABRIC_VERSION}"
export FABRIC_TOOLS_IMAGE="${FABRIC_TOOLS_IMAGE:-hyperledger/fabric-tools:$FABRIC_VERSION}"
ORDERER_CA=/network/organizations/ordererOrganizations/example.com/orderers/orderer.example.com/tls/ca.crt

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$REPO/docker-compose.yaml" "$@"
    else
        docker-compose -f "$REPO/docker-compose.yaml" "$@"
    fi
}

peer_port() { if [ "$1" = 1 ]; then echo 7051; else echo 9051; fi; }

peer_tls_ca() { echo "/network/organizations/peerOrganizations/org$1.example.com/peers/peer0.org$1.example.com/tls/ca.crt"; }

# in_cli ORG [--as MSPDIR] CMD…: run CMD in the tools container as ORG's admin (or MSPDIR).
in_cli() {
    local org="$1"; shift
    local msp="/network/organizations/peerOrganizations/org$org.example.com/users/Admin@org$org.example.com/msp"
    if [ "${1:-}" = "--as" ]; then msp="$2"; shift 2; fi
    # Absolute: the peer CLI resolves a relative MSP or TLS path against FABRIC_CFG_PATH, not the
    # working directory.
    case "$msp" in /*) ;; *) msp="/network/$msp" ;; esac
    docker exec \
        -e CORE_PEER_TLS_ENABLED=true \
        -e CORE_PEER_LOCALMSPID="Org${org}MSP" \
        -e CORE_PEER_TLS_ROOTCERT_FILE="$(peer_tls_ca "$org")" \
        -e CORE_PEER_MSPCONFIGPATH="$msp" \
        -e CORE_PEER_ADDRESS="peer0.org$org.example.com:$(peer_port "$org")" \
        tom-cli "$@"
}

# Both peers, for commands that must be endorsed by both organisations.
both_peers() {
    echo --peerAddresses "peer0.org1.example.com:7051" --tlsRootCertFiles "$(peer_tls_ca 1)" \
         --peerAddresses "peer0.org2.example.com:9051" --tlsRootCertFiles "$(peer_tls_ca 2)"
}

need_docker() {
    docker info >/dev/null 2>&1 || { echo "error: no Docker engine is reachable (docker info failed)" >&2; exit 1; }
}
