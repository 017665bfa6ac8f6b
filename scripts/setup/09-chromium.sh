#!/usr/bin/env bash
# The audit page (`/audit`) is tested in a real browser: gateway/tests/audit_page_browser.rs drives
# headless Chromium through WebDriver, so the tests need Debian's `chromium` and
# `chromium-driver` on the machine. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver: present ($(chromium --version 2>/dev/null || echo '?'))"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt_get() {
    if [ "$(id -u)" -eq 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi
}
apt_get update -qq
apt_get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "chromium and chromedriver installed ($(chromium --version 2>/dev/null || echo '?'))"
