#!/usr/bin/env bash
# Installs protoc and the protobuf well-known types (Debian's protobuf-compiler, libprotobuf-dev).
# Why: the gateway's Fabric back end takes the Fabric protobuf definitions (gateway.proto,
# peer/transaction.proto, ...) from the fabric-sdk crate, whose build script compiles the .proto
# files it ships, so building the workspace needs protoc. Idempotent.
set -euo pipefail

if command -v protoc >/dev/null 2>&1 && [ -e /usr/include/google/protobuf/timestamp.proto ]; then
    echo "protoc present: $(protoc --version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev >/dev/null
echo "protoc installed: $(protoc --version)"
