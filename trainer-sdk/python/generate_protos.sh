#!/usr/bin/env bash
# Regenerates the gRPC/protobuf code of checkpoint_sdk from protos/checkpoint/v1 (the contract shared with
# the sidecar and the .NET SDK).
#
#   trainer-sdk/python/generate_protos.sh [OUTPUT_ROOT]
#
# OUTPUT_ROOT defaults to trainer-sdk/python/checkpoint_sdk/_proto (the committed files); tests pass a temp dir
# and compare.
#
# Which protoc, and why (checked against the protoc binaries that NuGet's Grpc.Tools packages carry):
#   protoc <= 3.18 (e.g. Debian's python3-grpc-tools 1.14 = protoc 3.5.1) constructs descriptors directly;
#     protobuf >= 4.21 (upb, every current wheel) refuses that with "Descriptors cannot be created directly".
#   protoc 3.20 .. 26.x write a serialized descriptor plus `_builder` calls, which every runtime since 3.20 runs.
#   protoc >= 27 (Grpc.Tools >= 2.66) also writes `_runtime_version.ValidateProtobufRuntimeVersion(...)`, which
#     raises VersionError on any runtime older than that protoc (Debian 12 has 3.21).
#   "New gencode + old runtime" is never supported (protobuf.dev cross-version guarantee), so the newest protoc
#   whose output the oldest runtime we support (3.21, Debian 12's python3-protobuf) may run is 3.21: protoc
#   3.21.6 from Grpc.Tools 2.50.0. Its output has no version check and uses only the builder API, which current
#   runtimes (5.x, 6.x, 7.x) still provide.
# The _pb2_grpc module comes from the gRPC plugin inside Debian's python3-grpc-tools: its output uses only
# channel.unary_unary/unary_stream and the generic handler API that every grpcio since 1.14 has, and no
# GRPC_GENERATED_VERSION check (newer grpcio-tools emit one that refuses older grpcio).
#
# Needs: the .NET SDK with NuGet access (restores Grpc.Tools into the NuGet cache once) and python3-grpc-tools.
# PROTOC=/path/to/protoc-3.21.x skips the restore.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/checkpoint_sdk/_proto}"
python="${PYTHON:-/usr/bin/python3}"
grpc_tools_version=2.50.0
want_protoc="libprotoc 3.21.6"

find_protoc() {
    case "$(uname -m)" in
        x86_64) arch=linux_x64 ;;
        aarch64) arch=linux_arm64 ;;
        *) echo "generate_protos.sh: no protoc in Grpc.Tools for $(uname -m); set PROTOC" >&2; exit 1 ;;
    esac
    local packages
    packages="${NUGET_PACKAGES:-$(dotnet nuget locals global-packages --list | sed -n 's/^global-packages: //p')}"
    local tools="$packages/grpc.tools/$grpc_tools_version"
    if [ ! -x "$tools/tools/$arch/protoc" ]; then
        # A throwaway project outside the repository, so the repo's central package versions do not apply.
        local scratch
        scratch="$(mktemp -d)"
        cat > "$scratch/restore-protoc.csproj" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>net10.0</TargetFramework>
    <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
  </PropertyGroup>
  <ItemGroup>
    <PackageDownload Include="Grpc.Tools" Version="[$grpc_tools_version]" />
  </ItemGroup>
</Project>
EOF
        dotnet restore "$scratch/restore-protoc.csproj" >&2
        rm -rf "$scratch"
        # NuGet does not always keep the executable bit of package files.
        [ -x "$tools/tools/$arch/protoc" ] || chmod +x "$tools/tools/$arch/protoc"
    fi
    protoc="$tools/tools/$arch/protoc"
    protoc_include="$tools/build/native/include"
}

if [ -n "${PROTOC:-}" ]; then
    protoc="$PROTOC"
    protoc_include="${PROTOC_INCLUDE:-/usr/include}"
else
    find_protoc
fi
version="$("$protoc" --version)"
if [ "$version" != "$want_protoc" ]; then
    echo "generate_protos.sh: $protoc is '$version'; the committed code is made by '$want_protoc' (see above)" >&2
    exit 1
fi

mkdir -p "$out/checkpoint/v1"
cd "$repo"
"$protoc" -I protos -I "$protoc_include" --python_out="$out" --pyi_out="$out" \
    protos/checkpoint/v1/checkpoint.proto
"$python" -m grpc_tools.protoc -I protos --grpc_python_out="$out" protos/checkpoint/v1/checkpoint.proto
# The plugin writes `from checkpoint.v1 import checkpoint_pb2`: made package-relative so the package imports
# without sys.path tricks.
sed -i 's/^from checkpoint\.v1 import checkpoint_pb2 as /from . import checkpoint_pb2 as /' \
    "$out/checkpoint/v1/checkpoint_pb2_grpc.py"
for d in "$out" "$out/checkpoint" "$out/checkpoint/v1"; do
    [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done
