#!/usr/bin/env bash
# One command to run TOM on a fresh machine: installs the one build tool the workspace needs
# (protoc, for the Fabric protobuf definitions), builds the gateway and starts it on the
# embedded ledger. Arguments go to `tom serve` (e.g. --listen 127.0.0.1:9090 --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup/10-protoc.sh >&2
exec cargo run --release --locked -p tom-gateway --bin tom -- serve "$@"
