#!/usr/bin/env bash
# Install Debian's Chromium and a font (legible screenshots) for the browser tests (tests/browser).
# Playwright drives /usr/bin/chromium directly (no ChromeDriver, no browser download).
# Idempotent: returns at once when both are already installed.
set -euo pipefail

if [ -x /usr/bin/chromium ] && dpkg -s chromium fonts-dejavu-core >/dev/null 2>&1; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null)"
