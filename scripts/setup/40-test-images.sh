#!/usr/bin/env bash
# Builds the Swarm tests' workload image, tom-workload:test, from the project's own binary:
# no registry is reachable and no base image can be pulled, so the image is FROM scratch with
# the binary, the shared libraries `ldd` names and the dynamic loader. Rebuilt every run (the
# build is cached by cargo and docker), so the image always holds the current workload code.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine is reachable; cannot build the test image tom-workload:test." >&2
    exit 1
fi

cargo build -p tom-workload --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/tom-workload"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/data" "$ctx/rootfs/etc/tom"
cp "$bin" "$ctx/rootfs/usr/local/bin/tom-workload"
# Every library the binary links, and the loader, at the paths the binary expects.
for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cp workload/Dockerfile "$ctx/Dockerfile"

# The legacy builder needs no buildx plugin, and FROM scratch needs no pull.
DOCKER_BUILDKIT=0 docker build --quiet --tag tom-workload:test "$ctx" >/dev/null 2>"$ctx/build.log" || {
    cat "$ctx/build.log" >&2
    exit 1
}
echo "tom-workload:test built: $(docker image inspect --format '{{.Id}}' tom-workload:test)"
