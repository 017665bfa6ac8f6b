#!/usr/bin/env bash
# Installs the openssl, jq and curl command lines (Debian's openssl, jq, curl).
# Why: the device id-proof worked example of POST /v1/devices (gateway/src/api/device_id_proof.md,
# also in README) is written for them, and gateway/tests/id_proof_openssl.rs runs it as written.
# Idempotent.
set -euo pipefail

missing=()
for tool in openssl jq curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "openssl, jq and curl present: $(openssl version), $(jq --version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" ca-certificates >/dev/null
echo "installed: ${missing[*]}"
