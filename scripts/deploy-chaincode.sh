#!/usr/bin/env bash
# Deploy TOM's chaincode as a service on the test network started by scripts/network-up.sh:
#   1. build the chaincode image tom-chaincode:dev from an optimised build of the project's
#      binary (skip with SKIP_IMAGE=1);
#   2. package it as CCaaS (scripts/package-chaincode.sh: connection.json says tom-chaincode:9999)
#      and install the package on both peers;
#   3. start the tom-chaincode container with CHAINCODE_ID = the package id;
#   4. approve the definition for Org1MSP and Org2MSP with the endorsement policy
#      AND('Org1MSP.peer','Org2MSP.peer'), then commit it (endorsed by both peers);
#   5. query org.hyperledger.fabric:GetMetadata through the peer CLI as a smoke test.
# Re-running upgrades: the sequence is one past the committed one.
set -euo pipefail
# shellcheck source=network-env.sh
source "$(dirname "$0")/network-env.sh"
need_docker
cd "$REPO"

LABEL="${LABEL:-tom_0.1}"
VERSION="${VERSION:-0.1}"
POLICY="AND('Org1MSP.peer','Org2MSP.peer')"
orderer=(-o orderer.example.com:7050 --tls --cafile "$ORDERER_CA")

if [ "${SKIP_IMAGE:-0}" != 1 ]; then
    echo "==> chaincode image"
    TOM_CHAINCODE_PROFILE=release bash scripts/setup/30-chaincode-image.sh
fi

echo "==> package"
package_id=$(scripts/package-chaincode.sh --label "$LABEL" --address tom-chaincode:9999 --out network/packages)
echo "package id: $package_id"

for n in 1 2; do
    echo "==> install on peer0.org$n"
    if in_cli "$n" peer lifecycle chaincode queryinstalled | grep -q "Package ID: $package_id,"; then
        echo "already installed"
    else
        in_cli "$n" peer lifecycle chaincode install "packages/$LABEL.tar.gz"
    fi
done

echo "==> start the chaincode service"
CHAINCODE_ID="$package_id" compose up -d --force-recreate tom-chaincode

committed=$(in_cli 1 peer lifecycle chaincode querycommitted --channelID "$CHANNEL" --name "$CHAINCODE_NAME" 2>/dev/null \
    | sed -n 's/.*Sequence: \([0-9]*\).*/\1/p' || true)
# A CCaaS package holds only connection.json, so a new chaincode binary keeps the package id:
# restarting the service (above) is the whole upgrade, and the definition stays as committed.
approved=$(in_cli 1 peer lifecycle chaincode queryapproved --channelID "$CHANNEL" --name "$CHAINCODE_NAME" --output json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["source"]["Type"]["LocalPackage"]["package_id"])' 2>/dev/null || true)
if [ -n "$committed" ] && [ "$approved" = "$package_id" ]; then
    echo "==> definition sequence $committed already uses $package_id: nothing to approve"
    SKIP_DEFINITION=1
fi
sequence=$(( ${committed:-0} + 1 ))
if [ "${SKIP_DEFINITION:-0}" != 1 ]; then
echo "==> approve (sequence $sequence, policy $POLICY)"
for n in 1 2; do
    in_cli "$n" peer lifecycle chaincode approveformyorg "${orderer[@]}" --channelID "$CHANNEL" \
        --name "$CHAINCODE_NAME" --version "$VERSION" --package-id "$package_id" --sequence "$sequence" \
        --signature-policy "$POLICY"
done
in_cli 1 peer lifecycle chaincode checkcommitreadiness --channelID "$CHANNEL" --name "$CHAINCODE_NAME" \
    --version "$VERSION" --sequence "$sequence" --signature-policy "$POLICY" --output json

echo "==> commit"
# shellcheck disable=SC2046 # both_peers prints separate words on purpose
in_cli 1 peer lifecycle chaincode commit "${orderer[@]}" --channelID "$CHANNEL" --name "$CHAINCODE_NAME" \
    --version "$VERSION" --sequence "$sequence" --signature-policy "$POLICY" $(both_peers)
fi
in_cli 1 peer lifecycle chaincode querycommitted --channelID "$CHANNEL" --name "$CHAINCODE_NAME"

echo "==> smoke test: GetMetadata through peer0.org1"
for attempt in $(seq 1 10); do
    if metadata=$(in_cli 1 peer chaincode query -C "$CHANNEL" -n "$CHAINCODE_NAME" \
        -c '{"Args":["org.hyperledger.fabric:GetMetadata"]}'); then
        echo "${metadata:0:300}…"
        break
    fi
    [ "$attempt" = 10 ] && { echo "error: the chaincode does not answer; see: docker logs tom-chaincode" >&2; exit 1; }
    sleep 2
done
echo "deployed $package_id on channel $CHANNEL; invoke with scripts/network-invoke.sh"
