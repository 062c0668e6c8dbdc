#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser test (tests/integration/
# test_quickstart.py drives the web page with them). Chromium needs dozens of system libraries,
# so unlike kcat it is installed with apt-get, which needs root (or password-less sudo). Never
# fails the build: when it cannot install, it says why and the browser test skips with that reason
# (written to .venv/opt/chromium-install.log).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=.venv/opt/chromium-install.log
mkdir -p "$(dirname "$LOG")"
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
note() { echo "chromium: $*" | tee "$LOG" >&2; exit 0; }
command -v apt-get >/dev/null || note "apt-get not found; the browser test will skip"
SUDO=()
if [[ $(id -u) != 0 ]]; then
  sudo -n true 2>/dev/null || note "not root and no password-less sudo; the browser test will skip"
  SUDO=(sudo -n)
fi
echo "==> installing Debian's chromium and chromium-driver for the browser test (log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
install() { "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver; }
if ! install >"$LOG" 2>&1; then
  # A machine whose package lists were never fetched: fetch them once, then try again.
  { "${SUDO[@]}" apt-get update -q && install; } >>"$LOG" 2>&1 ||
    note "apt-get install chromium chromium-driver failed (see $LOG); the browser test will skip"
fi
chromium --version
