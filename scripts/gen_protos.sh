#!/usr/bin/env bash
# Generates the Python gRPC/protobuf code (with .pyi stubs) for every file under protos/
# into OUT_ROOT/shared/api/..., the one package that holds generated code.
# Usage: scripts/gen_protos.sh [OUT_ROOT]   (default: the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
out_root="${1:-.}"
python="${PYTHON:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mapfile -t protos < <(cd protos && find . -name '*.proto' | sed 's|^\./||' | sort)
# The .proto files import each other by their path under protos/ (what any client compiles
# with -Iprotos); the generated modules then import `vitrine...`, rewritten here to the package
# that holds them, `shared.api.vitrine...`, and so is the module name the messages are built in
# (what pickle looks up).
"$python" -m grpc_tools.protoc -Iprotos \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" "${protos[@]}"
find "$tmp" \( -name '*.py' -o -name '*.pyi' \) -exec sed -i -E \
  -e 's/^from vitrine\./from shared.api.vitrine./' -e 's/^import vitrine\./import shared.api.vitrine./' \
  -e "s/(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'vitrine\./\1'shared.api.vitrine./" {} +
mkdir -p "$out_root/shared/api"
rm -rf "$out_root/shared/api/vitrine"
cp -r "$tmp/vitrine" "$out_root/shared/api/vitrine"
# Every directory of the generated tree is a regular package.
find "$out_root/shared/api" -type d -exec sh -c 'for d; do [ -f "$d/__init__.py" ] || : > "$d/__init__.py"; done' _ {} +
