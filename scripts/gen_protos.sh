#!/usr/bin/env bash
# Generates the Python gRPC/protobuf code (with .pyi stubs) for every file under protos/
# into OUT_ROOT/shared/api/..., the one package that holds generated code.
# Usage: scripts/gen_protos.sh [OUT_ROOT]   (default: the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
out_root="${1:-.}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$out_root/shared/api"
mapfile -t protos < <(find protos -name '*.proto' | sort)
# -Ishared/api=protos maps the proto tree onto the package path, so generated modules import
# each other as `shared.api.vitrine...` rather than as top-level modules.
"$python" -m grpc_tools.protoc -Ishared/api=protos \
  --python_out="$out_root" --pyi_out="$out_root" --grpc_python_out="$out_root" "${protos[@]}"
# Every directory of the generated tree is a regular package.
find "$out_root/shared/api" -type d -exec sh -c 'for d; do [ -f "$d/__init__.py" ] || : > "$d/__init__.py"; done' _ {} +
