#!/usr/bin/env bash
# Regenerates the gRPC/protobuf code of checkpoint_sdk from protos/checkpoint/v1 (the contract shared with
# the sidecar and the .NET SDK). Reproducible: Debian's python3-grpc-tools (grpcio-tools 1.51, protobuf 3.21).
#
#   trainer-sdk/python/generate_protos.sh [OUTPUT_ROOT]
#
# OUTPUT_ROOT defaults to trainer-sdk/python/checkpoint_sdk/_proto (the committed files); tests pass a temp dir
# and compare. protoc writes `from checkpoint.v1 import checkpoint_pb2` into the _grpc module; that import is
# rewritten to a package-relative one so the package imports without sys.path tricks.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/checkpoint_sdk/_proto}"
python="${PYTHON:-/usr/bin/python3}"

mkdir -p "$out/checkpoint/v1"
cd "$repo"
"$python" -m grpc_tools.protoc -I protos \
    --python_out="$out" --grpc_python_out="$out" \
    protos/checkpoint/v1/checkpoint.proto
sed -i 's/^from checkpoint\.v1 import checkpoint_pb2 as /from . import checkpoint_pb2 as /' \
    "$out/checkpoint/v1/checkpoint_pb2_grpc.py"
for d in "$out" "$out/checkpoint" "$out/checkpoint/v1"; do
    [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done
