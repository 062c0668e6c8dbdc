#!/usr/bin/env bash
# Fetches promtool (Debian's prometheus package) into .venv/opt/prometheus without root:
# `apt-get download` and `dpkg -x`, as scripts/fetch_kcat.sh does. `make test` checks and
# unit-tests deploy/observability/alerts.yaml with it. Never fails the build: without apt, the
# promtool tests skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=.venv/opt/prometheus
[[ -x $DEST/promtool ]] && exit 0
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "promtool: apt-get/dpkg not found; the alert rule tests will skip" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
  echo "promtool: apt-get download failed; the alert rule tests will skip" >&2
  exit 0
fi
mkdir -p "$DEST"
dpkg -x "$work"/prometheus_*.deb "$work/root"
cp "$work/root/usr/bin/promtool" "$DEST/promtool"
if "$DEST/promtool" --version >/dev/null 2>&1; then
  echo "promtool: installed in $DEST"
else
  echo "promtool: unpacked but does not run here; the alert rule tests will skip" >&2
  rm -rf "$DEST"
fi
