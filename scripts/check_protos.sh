#!/usr/bin/env bash
# Fails when the committed generated code in shared/api differs from a fresh generation.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
scripts/gen_protos.sh "$tmp"
if ! diff -r -x '__pycache__' "$tmp/shared/api" shared/api > "$tmp/diff.txt"; then
  echo "ERROR: generated protobuf code in shared/api is out of date with protos/." >&2
  echo "       A .proto was edited without regenerating: run 'make protos' and commit the result." >&2
  cut -c1-160 "$tmp/diff.txt" | head -40 >&2
  exit 1
fi
echo "protos-check: shared/api matches protos/ ($(find protos -name '*.proto' | wc -l) files)"
