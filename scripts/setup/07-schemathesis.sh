#!/usr/bin/env bash
# scripts/schemathesis.sh checks the gateway against its own OpenAPI document with the Python
# package `schemathesis` (pinned).
set -euo pipefail
version=4.32.5
if python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$version')" 2>/dev/null; then
    echo "schemathesis $version: present"
    exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "schemathesis==$version"
python3 -c 'import importlib.metadata as m; print("schemathesis", m.version("schemathesis"), "installed")'
