#!/usr/bin/env bash
# Call TOM's chaincode on the test network through the peer CLI as a fixture identity:
#
#   scripts/network-invoke.sh [--query] ORG NAME FUNCTION 'JSON'
#   e.g. scripts/network-invoke.sh 1 admin RegisterOrg "$(jq -n --arg ca "$(cat fixtures/pki/org1/ca.pem)" \
#            '{msp_id:"Org1MSP", name:"org1", ca_certificates:[$ca], policy:{}}')"
#        scripts/network-invoke.sh --query 1 auditor GetOrg '{"id":"Org1MSP"}'
#
# ORG is 1 or 2, NAME a fixture identity of fixtures/pki/orgORG (its MSP folder is made by
# network-up.sh). An invoke is sent to both peers, as the AND endorsement policy requires, and
# waits for the commit; --query asks peer0 of ORG only.
set -euo pipefail
# shellcheck source=network-env.sh
source "$(dirname "$0")/network-env.sh"
need_docker

query=0
if [ "${1:-}" = "--query" ]; then query=1; shift; fi
[ $# -eq 4 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
org="$1" name="$2" function="$3" json="$4"
[[ "$org" =~ ^[12]$ ]] || { echo "error: ORG must be 1 or 2" >&2; exit 2; }
msp="organizations/peerOrganizations/org$org.example.com/users/$name@tom/msp"
[ -d "$REPO/network/$msp" ] || { echo "error: no MSP folder for org$org/$name (run scripts/network-up.sh)" >&2; exit 2; }
args=$(python3 -c 'import json,sys; print(json.dumps({"Args": [sys.argv[1], sys.argv[2]]}))' "$function" "$json")

if [ "$query" = 1 ]; then
    in_cli "$org" --as "$msp" peer chaincode query -C "$CHANNEL" -n "$CHAINCODE_NAME" -c "$args"
else
    # shellcheck disable=SC2046 # both_peers prints separate words on purpose
    in_cli "$org" --as "$msp" peer chaincode invoke -o orderer.example.com:7050 --tls --cafile "$ORDERER_CA" \
        -C "$CHANNEL" -n "$CHAINCODE_NAME" $(both_peers) --waitForEvent -c "$args"
fi
