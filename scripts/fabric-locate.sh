# shellcheck shell=bash
# Finds the Hyperledger Fabric 2.5 binaries the Fabric tests run (sourced by
# scripts/setup/50-fabric.sh, scripts/fabric-testnet.sh and scripts/test-fabric.sh).
#
#   FABRIC_BIN=DIR            a Fabric install of your own: DIR holds peer, orderer, configtxgen,
#                             configtxlator, osnadmin, cryptogen. The CCaaS builder is taken from
#                             FABRIC_CCAAS_BUILDER (the folder holding bin/{detect,build,release})
#                             or else DIR/../builders/ccaas; Fabric's sample config (core.yaml,
#                             orderer.yaml) from FABRIC_CFG_DIR or else DIR/../config.
#   otherwise                 ../shared/fabric-2.5.12-linux-amd64.tar.xz beside the repository,
#                             checked against ../shared/fabric-2.5.12.sha256 and unpacked once
#                             into ${XDG_CACHE_HOME:-$HOME/.cache}/tom/fabric-2.5.12.
#
# fabric_locate sets FABRIC_BIN_DIR, FABRIC_BUILDER_DIR, FABRIC_SAMPLE_CONFIG and FABRIC_SOURCE,
# or returns 1 with FABRIC_MISSING saying why.

FABRIC_RELEASE=2.5.12

fabric_locate() {
    local repo shared cache tools=(peer orderer configtxgen configtxlator osnadmin cryptogen) t
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    FABRIC_MISSING=""
    if [ -n "${FABRIC_BIN:-}" ]; then
        FABRIC_BIN_DIR="$(cd "$FABRIC_BIN" 2>/dev/null && pwd)" || { FABRIC_MISSING="FABRIC_BIN=$FABRIC_BIN is not a directory"; return 1; }
        FABRIC_BUILDER_DIR="${FABRIC_CCAAS_BUILDER:-$FABRIC_BIN_DIR/../builders/ccaas}"
        FABRIC_SAMPLE_CONFIG="${FABRIC_CFG_DIR:-$FABRIC_BIN_DIR/../config}"
        FABRIC_SOURCE="FABRIC_BIN=$FABRIC_BIN_DIR"
    else
        shared="$(cd "$repo/.." && pwd)/shared"
        local archive="$shared/fabric-$FABRIC_RELEASE-linux-amd64.tar.xz" sums="$shared/fabric-$FABRIC_RELEASE.sha256"
        cache="${XDG_CACHE_HOME:-$HOME/.cache}/tom/fabric-$FABRIC_RELEASE"
        if [ ! -e "$cache/.unpacked" ]; then
            if [ ! -r "$archive" ] || [ ! -r "$sums" ]; then
                FABRIC_MISSING="FABRIC_BIN is not set and $archive (with $sums) is not there"
                return 1
            fi
            echo "fabric: checking $archive" >&2
            (cd "$shared" && sha256sum --quiet -c "$sums") >&2 || { FABRIC_MISSING="$archive does not match $sums"; return 1; }
            local tmp
            mkdir -p "$(dirname "$cache")"
            tmp="$(mktemp -d "$(dirname "$cache")/.unpack.XXXXXX")"
            tar -xJf "$archive" -C "$tmp" || { rm -rf "$tmp"; FABRIC_MISSING="cannot unpack $archive"; return 1; }
            rm -rf "$cache"
            mv "$tmp/fabric-$FABRIC_RELEASE" "$cache"
            rm -rf "$tmp"
            touch "$cache/.unpacked"
            echo "fabric: unpacked into $cache" >&2
        fi
        FABRIC_BIN_DIR="$cache/bin"
        FABRIC_BUILDER_DIR="$cache/builders/ccaas"
        FABRIC_SAMPLE_CONFIG="$cache/config"
        FABRIC_SOURCE="$archive (cached in $cache)"
    fi
    for t in "${tools[@]}"; do
        [ -x "$FABRIC_BIN_DIR/$t" ] || { FABRIC_MISSING="no executable $t in $FABRIC_BIN_DIR"; return 1; }
    done
    for t in detect build release; do
        [ -x "$FABRIC_BUILDER_DIR/bin/$t" ] || { FABRIC_MISSING="no CCaaS builder $FABRIC_BUILDER_DIR/bin/$t (set FABRIC_CCAAS_BUILDER)"; return 1; }
    done
    FABRIC_BUILDER_DIR="$(cd "$FABRIC_BUILDER_DIR" && pwd)"
    for t in core.yaml orderer.yaml; do
        [ -r "$FABRIC_SAMPLE_CONFIG/$t" ] || { FABRIC_MISSING="no $t in $FABRIC_SAMPLE_CONFIG (set FABRIC_CFG_DIR to Fabric's config folder)"; return 1; }
    done
    FABRIC_SAMPLE_CONFIG="$(cd "$FABRIC_SAMPLE_CONFIG" && pwd)"
    return 0
}
