#!/usr/bin/env bash
# Evidence bundles from real Fabric 2.5 peers: size, export time and offline verification time
# for fan-in lineages of about 10 and 100 records (TOM_BENCH_SIZES, at most three sizes).
#
# Starts the native test network (scripts/fabric-testnet.sh: Org1 with two peers, Org2 with one,
# this checkout's tom-chaincode as CCaaS), points `cargo bench --bench evidence` at it through a
# connection profile for peer0.org1 (TOM_BENCH_FABRIC_PROFILE) and stops the network. The bench
# registers Org1, joins one device per size and records the lineage through the peers (writes
# endorsed by both organisations), then builds each bundle with the ledger query system
# chaincode and verifies it offline. Without Fabric binaries it says so and exits 0.
# TOM_BENCH_PROFILE=dev measures with the (unoptimised) dev build instead of building the
# release one.
set -uo pipefail
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$SCRIPTS/.." && pwd)"
cd "$REPO"

# shellcheck source=fabric-locate.sh
source "$SCRIPTS/fabric-locate.sh"
if ! fabric_locate; then
    echo "bench-evidence-fabric: SKIPPED: $FABRIC_MISSING" >&2
    exit 0
fi
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
cargo build --locked --quiet -p tom-chaincode || exit 1
export TOM_CHAINCODE_BIN="$TARGET/debug/tom-chaincode"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/tom-fabric-bench.XXXXXX")"
cleanup() {
    bash "$SCRIPTS/fabric-testnet.sh" down "$DIR" >/dev/null 2>&1 || true
    rm -f "$DIR.up.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> native Fabric network"
if ! bash "$SCRIPTS/fabric-testnet.sh" up "$DIR" >/dev/null 2>"$DIR.up.log"; then
    cat "$DIR.up.log"
    exit 1
fi
# shellcheck source=/dev/null
source "$DIR/env.sh"
org1_users="$DIR/organizations/peerOrganizations/org1.example.com/users"
cat > "$DIR/profile.json" <<JSON
{
  "peer_endpoint": "https://${PEER_ADDRESS[peer0.org1]}",
  "tls_ca_certificate": "$(peer_tls_ca peer0.org1)",
  "msp_id": "Org1MSP",
  "certificate": "$org1_users/orchestrator@tom/msp/signcerts/cert.pem",
  "private_key": "$org1_users/orchestrator@tom/msp/keystore/priv_sk",
  "channel": "tom",
  "chaincode": "tom",
  "timeouts": { "endorse_ms": 30000, "commit_status_ms": 60000 }
}
JSON
echo "==> cargo bench -p tom-gateway --bench evidence (Fabric, sizes ${TOM_BENCH_SIZES:-10,100})"
TOM_BENCH_FABRIC_PROFILE="$DIR/profile.json" TOM_BENCH_SIZES="${TOM_BENCH_SIZES:-10,100}" \
    cargo bench --locked ${TOM_BENCH_PROFILE:+--profile "$TOM_BENCH_PROFILE"} -p tom-gateway --bench evidence
