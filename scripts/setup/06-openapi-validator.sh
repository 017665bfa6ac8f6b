#!/usr/bin/env bash
# The gateway's /openapi.json is checked by an independent OpenAPI 3 validator (Python package
# `openapi-spec-validator`), so the tests need it on the machine.
set -euo pipefail
if python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    echo "openapi-spec-validator: present"
    exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'openapi-spec-validator==0.7.1'
python3 -c 'import openapi_spec_validator; print("openapi-spec-validator installed")'
