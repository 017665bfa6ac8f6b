#!/usr/bin/env bash
# The deploy test checks docker-compose.yaml with the Compose tool (`docker compose config -q`
# or `docker-compose config -q`). Install Debian's docker-compose if neither is present.
set -euo pipefail

if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then
    echo "compose: $( (docker compose version 2>/dev/null || docker-compose --version) | head -1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq docker-compose >/dev/null
echo "compose: installed $(docker-compose --version)"
