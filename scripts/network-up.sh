#!/usr/bin/env bash
# Start TOM's two-organisation Fabric 2.5 test network and create channel `tom`:
#   1. crypto material with cryptogen (network/organizations/), run in the fabric-tools image;
#   2. TOM's identities: each organisation's MSP also trusts the fixture CA of fixtures/pki/orgN
#      (whose identities carry the tom.role attribute the contract authorises by), and an MSP
#      folder is made for every fixture identity (users/<name>@tom/msp) for the peer CLI;
#   3. the channel's genesis block with configtxgen (profile TomChannel, anchor peers included);
#   4. orderer, peers and tools container with docker compose;
#   5. the orderer joins the channel through its admin API (osnadmin), each peer joins it.
# Then run scripts/deploy-chaincode.sh. Undo with scripts/network-down.sh.
set -euo pipefail
# shellcheck source=network-env.sh
source "$(dirname "$0")/network-env.sh"
# shellcheck source=fixture-msp.sh
source "$(dirname "$0")/fixture-msp.sh"
need_docker
cd "$REPO"

tools() {
    docker run --rm --user "$(id -u):$(id -g)" -v "$REPO/network:/network" -w /network \
        -e FABRIC_CFG_PATH=/network "$FABRIC_TOOLS_IMAGE" "$@"
}

if [ ! -d network/organizations ]; then
    echo "==> cryptogen"
    tools cryptogen generate --config=crypto-config.yaml --output=organizations
fi

echo "==> TOM identities (fixture CAs trusted by Org1MSP and Org2MSP)"
trust_fixture_cas "$REPO" network/organizations

echo "==> channel genesis block"
mkdir -p network/channel-artifacts
tools configtxgen -profile TomChannel -outputBlock "channel-artifacts/$CHANNEL.block" -channelID "$CHANNEL"

echo "==> orderer, peers, tools"
compose up -d orderer.example.com peer0.org1.example.com peer0.org2.example.com cli

echo "==> orderer joins $CHANNEL"
orderer_tls=organizations/ordererOrganizations/example.com/orderers/orderer.example.com/tls
for attempt in $(seq 1 10); do
    if docker exec tom-cli osnadmin channel join --channelID "$CHANNEL" \
        --config-block "channel-artifacts/$CHANNEL.block" -o orderer.example.com:7053 \
        --ca-file "$orderer_tls/ca.crt" --client-cert "$orderer_tls/server.crt" --client-key "$orderer_tls/server.key"; then
        break
    fi
    [ "$attempt" = 10 ] && { echo "error: the orderer did not join $CHANNEL" >&2; exit 1; }
    sleep 2
done

for n in 1 2; do
    echo "==> peer0.org$n joins $CHANNEL"
    for attempt in $(seq 1 10); do
        if in_cli "$n" peer channel join -b "channel-artifacts/$CHANNEL.block"; then break; fi
        [ "$attempt" = 10 ] && { echo "error: peer0.org$n did not join $CHANNEL" >&2; exit 1; }
        sleep 2
    done
done
echo "network up: channel $CHANNEL with peer0.org1 (localhost:7051) and peer0.org2 (localhost:9051)"
