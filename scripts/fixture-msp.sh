# shellcheck shell=bash
# Sourced by scripts/network-up.sh (compose network) and scripts/fabric-testnet.sh (native test
# network), so that both trust TOM's identities the same way.
#
# trust_fixture_cas REPO ORGANIZATIONS_DIR: each organisation's MSP (Org1MSP, Org2MSP, made by
# cryptogen under ORGANIZATIONS_DIR/peerOrganizations/orgN.example.com) also trusts the CA of
# fixtures/pki/orgN, whose identities carry the tom.role attribute the contract authorises by, and
# every fixture identity gets an MSP folder users/<name>@tom/msp for the peer CLI.
trust_fixture_cas() {
    local repo="$1" orgs="$2" n msp cert name user
    for n in 1 2; do
        msp="$orgs/peerOrganizations/org$n.example.com/msp"
        cp "$repo/fixtures/pki/org$n/ca.pem" "$msp/cacerts/tom-fixtures-ca.pem"
        # NodeOU classification by OU alone, so that client/admin identities of either CA qualify
        # (cryptogen's version pins each OU to its own CA certificate).
        cat > "$msp/config.yaml" <<'YAML'
NodeOUs:
  Enable: true
  ClientOUIdentifier:
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    OrganizationalUnitIdentifier: orderer
YAML
        for cert in "$repo"/fixtures/pki/org$n/*.pem; do
            name=$(basename "$cert" .pem)
            case "$name" in ca|*.key) continue ;; esac
            user="$orgs/peerOrganizations/org$n.example.com/users/$name@tom/msp"
            mkdir -p "$user/signcerts" "$user/keystore" "$user/cacerts"
            cp "$cert" "$user/signcerts/cert.pem"
            cp "$repo/fixtures/pki/org$n/$name.key.pem" "$user/keystore/priv_sk"
            cp "$repo/fixtures/pki/org$n/ca.pem" "$user/cacerts/ca.pem"
            cp "$msp/config.yaml" "$user/config.yaml"
        done
    done
}
