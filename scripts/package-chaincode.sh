#!/usr/bin/env bash
# Package TOM's chaincode for Fabric as chaincode-as-a-service (CCaaS) and print its package id.
#
#   scripts/package-chaincode.sh [--label tom_0.1] [--address tom-chaincode:9999]
#       [--dial-timeout 10s] [--out network/packages]
#       [--tls-root-cert FILE [--client-cert FILE --client-key FILE]]
#
# The package is what `peer lifecycle chaincode install` takes: a tar.gz holding
#   metadata.json  {"type":"ccaas","label":"<label>"}   (type ccaas selects the peer's ccaas_builder)
#   code.tar.gz    holding connection.json: where the peer dials the chaincode, the dial timeout,
#                  and TLS: tls_required, and with it root_cert (the CA of the chaincode's server
#                  certificate); client_auth_required with client_cert/client_key (the
#                  certificate the peer presents, from the CA given to CHAINCODE_CLIENT_CA_CERT).
# No code is in a CCaaS package: the chaincode runs as its own service (tom-chaincode).
#
# The package id is "<label>:<sha256 of the package file>", the value the chaincode needs as
# CHAINCODE_ID. The archives are byte-deterministic (fixed member order, mtime, owner and mode, gzip
# without name or time), so the same inputs always give the same id on any machine.
# Output: the package path on stderr, the package id alone on stdout.
set -euo pipefail

label="tom_0.1"
address="tom-chaincode:9999"
dial_timeout="10s"
out="$(cd "$(dirname "$0")/.." && pwd)/network/packages"
root_cert=""
client_cert=""
client_key=""

die() { echo "package-chaincode: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --label) label="${2:?--label needs a value}"; shift 2 ;;
        --address) address="${2:?--address needs host:port}"; shift 2 ;;
        --dial-timeout) dial_timeout="${2:?--dial-timeout needs a duration such as 10s}"; shift 2 ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --tls-root-cert) root_cert="${2:?--tls-root-cert needs a PEM file}"; shift 2 ;;
        --client-cert) client_cert="${2:?--client-cert needs a PEM file}"; shift 2 ;;
        --client-key) client_key="${2:?--client-key needs a PEM file}"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

# Fabric's label rule; the CCaaS server checks the same shape for CHAINCODE_ID.
[[ "$label" =~ ^[[:alnum:]][[:alnum:]_.+-]*$ ]] || die "label '$label' must start with a letter or digit and contain only letters, digits and _ . + -"
[[ "$address" =~ ^[^:]+:[0-9]+$ ]] || die "address '$address' must be host:port"
[[ "$dial_timeout" =~ ^[0-9]+(ms|s|m)$ ]] || die "dial timeout '$dial_timeout' must be a duration such as 10s"
if [ -n "$client_cert$client_key" ]; then
    [ -n "$client_cert" ] && [ -n "$client_key" ] || die "--client-cert and --client-key go together"
    [ -n "$root_cert" ] || die "client authentication needs TLS: give --tls-root-cert too"
fi
for f in "$root_cert" "$client_cert" "$client_key"; do
    [ -z "$f" ] || [ -r "$f" ] || die "cannot read $f"
done
command -v python3 >/dev/null || die "python3 is needed to write JSON"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/code" "$work/pkg"

# JSON with python3 so that PEM newlines are escaped correctly; keys in a fixed order.
python3 - "$work/code/connection.json" "$address" "$dial_timeout" "$root_cert" "$client_cert" "$client_key" <<'PY'
import json, sys
path, address, dial_timeout, root_cert, client_cert, client_key = sys.argv[1:]
read = lambda p: open(p, encoding="ascii").read()
conn = {"address": address, "dial_timeout": dial_timeout, "tls_required": bool(root_cert)}
if root_cert:
    conn["root_cert"] = read(root_cert)
    conn["client_auth_required"] = bool(client_cert)
    if client_cert:
        conn["client_cert"] = read(client_cert)
        conn["client_key"] = read(client_key)
with open(path, "w", encoding="ascii") as f:
    json.dump(conn, f, indent=2)
    f.write("\n")
PY
printf '{"type":"ccaas","label":"%s"}\n' "$label" > "$work/pkg/metadata.json"

# Deterministic tar: members in the order given, epoch mtime, root owner, fixed modes, no pax headers with
# times; gzip -n drops the name and timestamp from the gzip header.
det_tar() {
    local dir="$1" dest="$2"; shift 2
    tar --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner --mode='u=rw,go=r' \
        --format=ustar -C "$dir" -cf - "$@" | gzip -n -9 > "$dest"
}
det_tar "$work/code" "$work/pkg/code.tar.gz" connection.json
mkdir -p "$out"
package="$out/$label.tar.gz"
det_tar "$work/pkg" "$package" metadata.json code.tar.gz

id="$label:$(sha256sum "$package" | cut -d' ' -f1)"
echo "package-chaincode: wrote $package" >&2
echo "$id"
