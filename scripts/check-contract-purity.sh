#!/usr/bin/env bash
# Architecture invariant: tom-contract (the chaincode library) never depends on an I/O or async
# runtime crate, so it stays a pure function of the ledger stub on every peer.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(tokio|tonic|bollard|hyper|axum|reqwest|mio|redb|async-std|smol|socket2|h2)$'
deps=$(cargo tree -p tom-contract --edges normal,build --prefix none --format '{p}' --locked | awk '{print $1}' | sort -u)
bad=$(echo "$deps" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
    echo "tom-contract depends on I/O crates it must never use:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "tom-contract depends on $(echo "$deps" | wc -l) crates, none of them I/O crates"
