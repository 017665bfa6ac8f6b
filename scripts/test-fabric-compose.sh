#!/usr/bin/env bash
# The compose network exactly as README tells users to run it, on TOM's local Fabric images
# (scripts/setup/55-fabric-images.sh) instead of the official ones, which cannot be pulled here:
#   scripts/network-up.sh; SKIP_IMAGE=1 scripts/deploy-chaincode.sh with this checkout's dev
#   build of tom-chaincode in an image of its own (TOM_CHAINCODE_IMAGE); README's example
#   transaction through the peer CLI (scripts/network-invoke.sh); `tom serve --fabric` with
#   README's connection profile and the smart-city demo through it; scripts/network-down.sh
#   (always, also on failure).
# Run by scripts/test.sh. Needs the fixed ports of docker-compose.yaml (127.0.0.1:7050,
# 7051, 7053, 9051) free and no compose network of TOM's already up.
set -uo pipefail
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$SCRIPTS/.." && pwd)"
cd "$REPO"
T0=$SECONDS
# shellcheck source=fabric-locate.sh
source "$SCRIPTS/fabric-locate.sh"
if ! fabric_locate; then
    echo "!!! FABRIC COMPOSE TEST SKIPPED: $FABRIC_MISSING" >&2
    [ "${TOM_REQUIRE_FABRIC:-0}" = 1 ] && { echo "error: TOM_REQUIRE_FABRIC=1: the Fabric tests must run" >&2; exit 1; }
    exit 0
fi
export FABRIC_ORDERER_IMAGE="tom-fabric-orderer:$FABRIC_RELEASE"
export FABRIC_PEER_IMAGE="tom-fabric-peer:$FABRIC_RELEASE"
export FABRIC_TOOLS_IMAGE="tom-fabric-tools:$FABRIC_RELEASE"

PASS=0
FAIL=0
pass() { PASS=$((PASS + 1)); echo "  PASS  $1"; }
fail() { FAIL=$((FAIL + 1)); echo "  FAIL  $1${2:+: $2}"; }
finish() {
    echo "Fabric tests (compose network): $PASS passed, $FAIL failed in $((SECONDS - T0))s"
    [ "$FAIL" = 0 ]
}

for image in "$FABRIC_ORDERER_IMAGE" "$FABRIC_PEER_IMAGE" "$FABRIC_TOOLS_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 || { fail "image $image" "missing (run scripts/setup/55-fabric-images.sh)"; finish; exit 1; }
done
if docker ps -a --format '{{.Names}}' | grep -qx 'tom-cli\|orderer.example.com\|peer0.org[12].example.com\|tom-chaincode' \
    || [ -e network/organizations ]; then
    fail "a compose network of TOM is already here" "take it down with scripts/network-down.sh first"
    finish; exit 1
fi
for port in 7050 7051 7053 9051; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "port 127.0.0.1:$port is in use" "docker-compose.yaml publishes it"
        finish; exit 1
    fi
done
# This checkout's chaincode under a tag of its own: tom-chaincode:dev is shared by every checkout
# on the machine's Docker engine.
export TOM_CHAINCODE_IMAGE="tom-chaincode:test-$(printf %s "$REPO" | sha256sum | cut -c1-8)"
bash scripts/setup/30-chaincode-image.sh >/dev/null || { fail "$TOM_CHAINCODE_IMAGE image"; finish; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tom-compose-test.XXXXXX")"
# README's network/connection-profile.json, under a name of its own so that a user's is untouched
# (in network/, so its relative paths resolve as README's does).
PROFILE="network/.connection-profile.test-$$.json"
GW_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    if [ "$FAIL" -gt 0 ]; then
        for c in orderer.example.com peer0.org1.example.com peer0.org2.example.com tom-chaincode; do
            echo "--- docker logs $c (last lines)"; docker logs --tail 8 "$c" 2>&1
        done
    fi
    bash scripts/network-down.sh >/dev/null 2>&1 || echo "warning: scripts/network-down.sh failed" >&2
    rm -f "$PROFILE"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t=$SECONDS
if bash scripts/network-up.sh > "$WORK/up.log" 2>&1; then
    pass "scripts/network-up.sh on $FABRIC_PEER_IMAGE ($((SECONDS - t))s)"
else
    fail "scripts/network-up.sh" "$(tail -15 "$WORK/up.log")"; finish; exit 1
fi
t=$SECONDS
if SKIP_IMAGE=1 bash scripts/deploy-chaincode.sh > "$WORK/deploy.log" 2>&1; then
    pass "SKIP_IMAGE=1 scripts/deploy-chaincode.sh ($((SECONDS - t))s)"
else
    fail "scripts/deploy-chaincode.sh" "$(tail -15 "$WORK/deploy.log")"; finish; exit 1
fi

# README's example: RegisterOrg through the peer CLI, endorsed by both peers, then read back.
org1_ca=$(cat fixtures/pki/org1/ca.pem)
request=$(python3 -c 'import json,sys; print(json.dumps({"msp_id":"Org1MSP","name":"City Traffic Management","ca_certificates":[sys.argv[1]],"policy":{}}))' "$org1_ca")
if out=$(bash scripts/network-invoke.sh 1 admin RegisterOrg "$request" 2>&1) \
    && grep -q "status:200" <<< "$out" \
    && got=$(bash scripts/network-invoke.sh --query 2 auditor GetOrg '{"id":"Org1MSP"}' 2>&1) \
    && grep -q '"Org1MSP"' <<< "$got"; then
    pass "peer CLI: RegisterOrg invoked on both peers, GetOrg read back from Org2's peer"
else
    fail "peer CLI transaction" "$(tail -c 800 <<< "$out${got:-}")"
fi

# tom serve --fabric with README's profile, the smart-city demo through it.
TOM="${CARGO_TARGET_DIR:-$REPO/target}/debug/tom"
cp network/connection-profile.example.json "$PROFILE"
# The network's MSPs trust the committed fixture CAs, so the demo uses that public PKI.
"$TOM" demo install --data-dir "$WORK/gw" --fixture-pki "$REPO/fixtures/pki" --insecure-public-demo-keys >/dev/null
GW_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TOM" serve --fabric "$PROFILE" --data-dir "$WORK/gw" --listen "127.0.0.1:$GW_PORT" \
    > "$WORK/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do
    python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$GW_PORT/healthz" 2>/dev/null && break
    sleep 0.2
done
t=$SECONDS
# The peers' Gateway plans endorsements from discovery, which learns the other organisation's
# peer through gossip a few seconds after the chaincode is committed; until then a write is a
# 503 "no combination of peers" and records nothing. Run the demo again (new ids) while its
# first write meets exactly that, for a bounded time.
demo_ok=""
for _ in $(seq 1 30); do
    if RUST_BACKTRACE=0 "$TOM" demo smart-city --gateway "http://127.0.0.1:$GW_PORT" --credentials "$WORK/gw/demo-credentials.json" > "$WORK/demo.log" 2>&1; then
        demo_ok=1
        break
    fi
    if grep -q 'no combination of peers' "$WORK/demo.log" && ! grep -q ' tx [0-9a-f]*… block' "$WORK/demo.log"; then
        sleep 1
        continue
    fi
    break
done
if [ -n "$demo_ok" ]; then
    pass "tom serve --fabric with README's connection profile: smart-city demo ($(grep -c ' tx [0-9a-f]*… block' "$WORK/demo.log") transactions, $((SECONDS - t))s)"
else
    fail "tom serve --fabric on the compose network" "$(tail -15 "$WORK/demo.log"; tail -5 "$WORK/gateway.log")"
fi
kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; GW_PID=""

t=$SECONDS
if bash scripts/network-down.sh > "$WORK/down.log" 2>&1 \
    && ! docker ps -a --format '{{.Names}}' | grep -qx 'tom-cli\|orderer.example.com\|peer0.org[12].example.com\|tom-chaincode' \
    && [ ! -e network/organizations ]; then
    pass "scripts/network-down.sh removed containers and generated files ($((SECONDS - t))s)"
else
    fail "scripts/network-down.sh" "$(tail -5 "$WORK/down.log")"
fi
finish
