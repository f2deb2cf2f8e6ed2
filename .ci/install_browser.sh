#!/usr/bin/env bash
# Install Debian's Chromium and a font (legible screenshots) for the browser tests (tests/browser).
# Playwright drives the Chromium binary directly (no ChromeDriver, no browser download): the
# tests use $P2P_TEACH_CHROMIUM if it is set, /usr/bin/chromium otherwise.
# Idempotent: returns at once when the browser (and, for Debian's, the font) is already there.
# apt-get needs root: the script runs it directly as root, or through passwordless sudo.
set -euo pipefail

if [ -n "${P2P_TEACH_CHROMIUM:-}" ]; then
    if [ -f "$P2P_TEACH_CHROMIUM" ] && [ -x "$P2P_TEACH_CHROMIUM" ]; then
        echo "using P2P_TEACH_CHROMIUM=$P2P_TEACH_CHROMIUM: $("$P2P_TEACH_CHROMIUM" --version 2>/dev/null | head -n 1)"
        echo "(nothing installed; fonts are not checked)"
        exit 0
    fi
    echo "error: P2P_TEACH_CHROMIUM=$P2P_TEACH_CHROMIUM is not an executable file." >&2
    echo "Point it at a Chromium binary, or unset it to install Debian's /usr/bin/chromium." >&2
    exit 1
fi

if [ -x /usr/bin/chromium ] && dpkg -s chromium fonts-dejavu-core >/dev/null 2>&1; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found: this script installs Debian's chromium package." >&2
    echo "Install Chromium another way and set P2P_TEACH_CHROMIUM to its binary." >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "error: installing chromium needs root, and sudo is not installed." >&2
        echo "Run this script as root, or set P2P_TEACH_CHROMIUM to an installed Chromium." >&2
        exit 1
    fi
    if ! sudo -n true 2>/dev/null; then
        echo "error: installing chromium needs root, and sudo asks for a password." >&2
        echo "Run this script as root (or with passwordless sudo), or set P2P_TEACH_CHROMIUM." >&2
        exit 1
    fi
    SUDO=(sudo -n)
fi

${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null)"
