#!/usr/bin/env bash
# Runs schemathesis (all checks) against a real `tom serve` on a temporary data directory on
# loopback, authenticated as the development orchestrator, bounded in examples and time. Any
# failure (a 5xx, an undocumented status or header, a schema-violating request accepted, a
# response that does not match the document) fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples="${TOM_SCHEMATHESIS_EXAMPLES:-10}"
max_time="${TOM_SCHEMATHESIS_SECONDS:-120}"
target="${CARGO_TARGET_DIR:-target}"

cargo build --locked -p tom-gateway --bin tom
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$target/debug/tom" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$data/serve.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    if [ -s "$data/dev-credentials.json" ] && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done
token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"]["orchestrator"])' "$data/dev-credentials.json")"

status=0
st --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
    --checks all \
    -H "Authorization: Bearer $token" \
    --max-examples "$max_examples" \
    --max-time "$max_time" \
    --request-timeout 10 \
    --seed 1 \
    --workers 2 \
    --no-color || status=$?
if ! kill -0 "$server" 2>/dev/null; then
    echo "tom serve exited during the run; its log:" >&2
    cat "$data/serve.log" >&2
    status=1
fi
exit "$status"
