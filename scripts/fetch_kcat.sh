#!/usr/bin/env bash
# Fetches Debian's kcat (a third-party Kafka client the tests produce JSON events with) into
# .venv/opt/kcat without root: `apt-get download` of kcat and the two libraries it needs that a
# bare Debian lacks, unpacked with `dpkg -x`. Run it through .venv/opt/kcat/kcat, which sets the
# library path. Never fails the build: without apt, the kcat test skips and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=.venv/opt/kcat
[[ -x $DEST/kcat ]] && exit 0
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "kcat: apt-get/dpkg not found; the kcat test will skip" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download kcat librdkafka1 libyajl2 >/dev/null 2>&1); then
  echo "kcat: apt-get download failed; the kcat test will skip" >&2
  exit 0
fi
mkdir -p "$DEST"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$DEST/root"; done
cat >"$DEST/kcat" <<'SH'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
libs=$(echo "$here"/root/usr/lib/*-linux-gnu)
LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  exec "$here/root/usr/bin/kcat" "$@"
SH
chmod +x "$DEST/kcat"
if "$DEST/kcat" -V >/dev/null 2>&1; then
  echo "kcat: installed in $DEST"
else
  echo "kcat: unpacked but does not run here; the kcat test will skip" >&2
  rm -rf "$DEST"
fi
