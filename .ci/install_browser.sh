#!/usr/bin/env bash
# Install Debian's Chromium, ChromeDriver and a font (legible screenshots) for the browser tests (tests/browser).
# Idempotent: returns at once when all three are already installed.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    && dpkg -s chromium chromium-driver fonts-dejavu-core >/dev/null 2>&1; then
    echo "chromium and chromium-driver already installed: $(/usr/bin/chromium --version 2>/dev/null)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null)"
