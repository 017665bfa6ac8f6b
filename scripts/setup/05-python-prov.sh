#!/usr/bin/env bash
# The PROV-JSON export is read back by the independent W3C PROV implementation for Python
# (package `prov`), so the tests need it on the machine.
set -euo pipefail
if python3 -c 'import prov.serializers.provjson' 2>/dev/null; then
    echo "python prov: present"
    exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'prov==2.1.1'
python3 -c 'import prov; print("python prov", prov.__version__, "installed")'
