#!/usr/bin/env bash
# The project's test command (README, .ci/run): prepares a fresh Debian machine with what the
# tests need, then runs every check. Each scripts/setup/*.sh step is idempotent and says what it
# installs or starts.
set -euo pipefail
cd "$(dirname "$0")/.."

for step in scripts/setup/*.sh; do
    [ -e "$step" ] || continue
    echo "==> setup: $step"
    bash "$step"
done

echo "==> the contract library must stay free of I/O crates"
bash scripts/check-contract-purity.sh

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests"
cargo test --workspace --locked

echo "==> the gateway against its OpenAPI document (schemathesis, all checks, ~2 minutes)"
bash scripts/schemathesis.sh

echo "==> coverage-guided fuzzing of what parses untrusted bytes (cargo afl, 20 s per target)"
bash scripts/fuzz.sh 20

# Real Fabric 2.5 peers (scripts/setup/50-fabric.sh found the binaries, or these say loudly that
# they are skipped; TOM_REQUIRE_FABRIC=1, set by .ci/run, makes that a failure).
echo "==> Fabric: native test network (scripts/test-fabric.sh)"
bash scripts/test-fabric.sh
echo "==> Fabric: the compose network as README runs it, on local images (scripts/test-fabric-compose.sh)"
bash scripts/test-fabric-compose.sh
