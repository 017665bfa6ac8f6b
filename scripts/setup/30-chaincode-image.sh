#!/usr/bin/env bash
# Builds the chaincode image tom-chaincode:dev from the project's own tom-chaincode binary, for
# the test that runs it and for scripts/deploy-chaincode.sh. No base image can be pulled, so
# the image is FROM scratch with the binary, every shared library `ldd` lists and the loader.
#
# TOM_CHAINCODE_PROFILE=release builds an optimised binary (what deploy-chaincode.sh uses);
# the default, dev, reuses the build the tests make anyway. Rebuilt on every run (cargo and
# docker cache), so the image always holds the current code.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile="${TOM_CHAINCODE_PROFILE:-dev}"
tag="${TOM_CHAINCODE_IMAGE:-tom-chaincode:dev}"

if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine is reachable (docker info failed); cannot build $tag." >&2
    echo "       start the engine and run scripts/setup/30-chaincode-image.sh again." >&2
    exit 1
fi

case "$profile" in
    dev) cargo build -p tom-chaincode --locked --quiet; bin="${CARGO_TARGET_DIR:-target}/debug/tom-chaincode" ;;
    release) cargo build -p tom-chaincode --locked --quiet --release; bin="${CARGO_TARGET_DIR:-target}/release/tom-chaincode" ;;
    *) echo "error: TOM_CHAINCODE_PROFILE must be dev or release, not '$profile'" >&2; exit 1 ;;
esac

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin"
cp "$bin" "$ctx/rootfs/usr/local/bin/tom-chaincode"
# The libraries at the absolute paths the binary was linked against (the loader included).
for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cp chaincode/Dockerfile "$ctx/Dockerfile"

# The legacy builder needs no buildx plugin, and FROM scratch needs no pull.
if ! DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx" >/dev/null 2>"$ctx/build.log"; then
    cat "$ctx/build.log" >&2
    exit 1
fi
echo "$tag built ($profile binary): $(docker image inspect --format '{{.Id}}' "$tag")"
