#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian 12 machine with the .NET 10 SDK:
# installs the Debian packages the tests use, publishes the Native AOT sidecar the integration
# tests start as a real process, then runs the whole solution's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Debian packages: xxhsum (independent hash check), FUSE for fault injection, gcc/zlib for Native AOT,
# a real Prometheus, promtool and Pushgateway, and what the Python SDK's tests need (gRPC, PyTorch CPU).
# kubectl (with built-in kustomize) comes with the machine image.
packages=(xxhash fuse3 python3-fusepy gcc zlib1g-dev prometheus prometheus-pushgateway
  python3-grpcio python3-protobuf python3-grpc-tools python3-torch python3-numpy python3-pytest)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "run-tests: missing Debian packages: ${missing[*]} (install them, or run as root)" >&2
    exit 1
  fi
  echo "run-tests: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null; then
  echo "run-tests: kubectl (with built-in kustomize) is needed by the deploy tests; it is not a Debian 12 package, install it from the Kubernetes release or use the project's machine image" >&2
  exit 1
fi

echo "run-tests: fault-injecting filesystem self-test"
bash tests/faultfs/selftest.sh

echo "run-tests: publishing the Native AOT sidecar"
dotnet publish sidecar/Checkpoint.Sidecar.csproj -c Release -o "$root/artifacts/sidecar" -nologo -v quiet
export CHECKPOINT_SIDECAR_BIN="$root/artifacts/sidecar/checkpoint-sidecar"

echo "run-tests: building and testing the solution"
dotnet build Checkpoint.sln -c Release -nologo -v quiet
dotnet test Checkpoint.sln -c Release --no-build -nologo --logger "console;verbosity=normal" "$@"

echo "run-tests: Python trainer SDK (real PyTorch, real sidecar)"
trainer-sdk/python/run-tests.sh
