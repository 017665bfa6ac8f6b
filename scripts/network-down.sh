#!/usr/bin/env bash
# Stop TOM's Fabric test network and remove its containers, volumes and generated material
# (network/organizations, network/channel-artifacts, network/packages).
set -euo pipefail
# shellcheck source=network-env.sh
source "$(dirname "$0")/network-env.sh"
need_docker
compose down --volumes --remove-orphans
rm -rf "$REPO/network/organizations" "$REPO/network/channel-artifacts" "$REPO/network/packages"
echo "network down"
