#!/usr/bin/env bash
# Builds TOM's local Fabric images from the Fabric binaries that scripts/setup/50-fabric.sh found,
# for the compose network's test (no image registry is reachable, so nothing can be pulled):
#   tom-fabric-peer:2.5.12     /usr/local/bin/peer, /etc/hyperledger/fabric/core.yaml (+ sample
#                              msp), the CCaaS builder in /opt/hyperledger/ccaas_builder/bin
#   tom-fabric-orderer:2.5.12  /usr/local/bin/orderer, /etc/hyperledger/fabric/orderer.yaml
#   tom-fabric-tools:2.5.12    the CLIs in /usr/local/bin, core.yaml, and /bin/bash
# all FROM scratch (network/images/Dockerfile.*), laid out as the official hyperledger/fabric-*
# images are. docker-compose.yaml uses them when FABRIC_PEER_IMAGE, FABRIC_ORDERER_IMAGE and
# FABRIC_TOOLS_IMAGE name them. Skipped (with a notice) when there are no Fabric binaries; an
# image is rebuilt only when its inputs changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../fabric-locate.sh
source scripts/fabric-locate.sh
if ! fabric_locate; then
    echo "fabric images: no Fabric binaries ($FABRIC_MISSING); not built" >&2
    exit 0
fi
if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine is reachable; cannot build TOM's Fabric images." >&2
    exit 1
fi

build() {
    local kind="$1" tag="tom-fabric-$1:$FABRIC_RELEASE" ctx key
    shift
    ctx=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: one context per call
    trap "rm -rf '$ctx'" RETURN
    mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/hyperledger/fabric" "$ctx/rootfs/tmp" \
        "$ctx/rootfs/var/hyperledger/production"
    chmod 1777 "$ctx/rootfs/tmp"
    local tool
    for tool in "$@"; do
        case "$tool" in
            *.yaml) cp "$FABRIC_SAMPLE_CONFIG/$tool" "$ctx/rootfs/etc/hyperledger/fabric/" ;;
            msp) cp -r "$FABRIC_SAMPLE_CONFIG/msp" "$ctx/rootfs/etc/hyperledger/fabric/" ;;
            ccaas)
                mkdir -p "$ctx/rootfs/opt/hyperledger/ccaas_builder/bin"
                cp "$FABRIC_BUILDER_DIR"/bin/{detect,build,release} "$ctx/rootfs/opt/hyperledger/ccaas_builder/bin/" ;;
            bash)
                mkdir -p "$ctx/rootfs/bin"
                cp /bin/bash "$ctx/rootfs/bin/bash"
                local lib
                for lib in $(ldd /bin/bash | grep -o '/[^ ]*' | sort -u); do
                    mkdir -p "$ctx/rootfs$(dirname "$lib")"
                    cp -L "$lib" "$ctx/rootfs$lib"
                done ;;
            *) cp "$FABRIC_BIN_DIR/$tool" "$ctx/rootfs/usr/local/bin/" ;;
        esac
    done
    cp "network/images/Dockerfile.$kind" "$ctx/Dockerfile"
    key=$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
    if [ "$(docker image inspect --format '{{index .Config.Labels "tom.inputs"}}' "$tag" 2>/dev/null)" = "$key" ]; then
        echo "$tag: up to date"
        return 0
    fi
    echo "LABEL tom.inputs=$key" >> "$ctx/Dockerfile"
    # The legacy builder needs no buildx plugin, and FROM scratch needs no pull.
    if ! DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx" >/dev/null 2>"$ctx/build.log"; then
        cat "$ctx/build.log" >&2
        exit 1
    fi
    echo "$tag built from $FABRIC_SOURCE"
}

build peer peer core.yaml msp ccaas
build orderer orderer orderer.yaml configtx.yaml msp
build tools peer orderer configtxgen configtxlator cryptogen osnadmin discover core.yaml orderer.yaml configtx.yaml msp bash
