#!/usr/bin/env bash
# The Fabric tests (scripts/test-fabric.sh) run real Hyperledger Fabric 2.5 peers and an orderer.
# Finds their binaries (scripts/fabric-locate.sh: FABRIC_BIN, or ../shared's archive checked by
# its SHA-256 and unpacked once into ~/.cache/tom). Without them this says so loudly and the
# Fabric tests are skipped, unless TOM_REQUIRE_FABRIC=1 (CI), which makes it an error.
set -euo pipefail
# shellcheck source=../fabric-locate.sh
source "$(dirname "$0")/../fabric-locate.sh"
if fabric_locate; then
    echo "fabric: $("$FABRIC_BIN_DIR/peer" version | sed -n 's/^ Version: //p') from $FABRIC_SOURCE"
    exit 0
fi
echo "!!! fabric: NOT FOUND: $FABRIC_MISSING" >&2
if [ "${TOM_REQUIRE_FABRIC:-0}" = 1 ]; then
    echo "error: TOM_REQUIRE_FABRIC=1 and no Fabric binaries; set FABRIC_BIN or provide the archive" >&2
    exit 1
fi
echo "!!! the Fabric tests will be SKIPPED (set FABRIC_BIN to your Fabric bin/ folder to run them)" >&2
