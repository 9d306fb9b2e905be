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

# Every suite runs even when an earlier one failed, so one failure never hides another; the script
# exits non-zero at the end if any step failed and names every failed step.
failed=()
step() {
  local name=$1
  shift
  echo "run-tests: $name"
  if ! "$@"; then
    echo "run-tests: FAILED: $name" >&2
    failed+=("$name")
  fi
}

step "fault-injecting filesystem self-test" bash tests/faultfs/selftest.sh

# The sidecar binary and the build are what every later suite runs: without them, stop here.
echo "run-tests: publishing the Native AOT sidecar"
dotnet publish sidecar/Checkpoint.Sidecar.csproj -c Release -o "$root/artifacts/sidecar" -nologo -v quiet
export CHECKPOINT_SIDECAR_BIN="$root/artifacts/sidecar/checkpoint-sidecar"
echo "run-tests: building the solution"
dotnet build Checkpoint.sln -c Release -nologo -v quiet

# A test that hangs is reported by name and its test host stopped (--blame-hang-timeout), so a run
# ends with a failure instead of hanging until CI gives up.
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
step "C# unit, integration and deploy tests" \
  bash -o pipefail -c 'dotnet test Checkpoint.sln -c Release --no-build -nologo --logger "console;verbosity=normal" --blame-hang-timeout 15m --blame-hang-dump-type none "$@" | tee "$0"' \
  "$log_dir/dotnet.log" "$@"
step "Python trainer SDK (real PyTorch, real sidecar)" \
  bash -o pipefail -c 'trainer-sdk/python/run-tests.sh | tee "$0"' "$log_dir/python.log"

# One closing line over every suite: dotnet test prints a summary per test project, pytest one line.
passed=0 failed_tests=0 skipped=0
while read -r key value; do
  case $key in
    Passed:) passed=$((passed + value)) ;;
    Failed:) failed_tests=$((failed_tests + value)) ;;
    Skipped:) skipped=$((skipped + value)) ;;
  esac
done < <(grep -E '^ +(Passed|Failed|Skipped): +[0-9]+$' "$log_dir/dotnet.log" || true)
pytest_summary=$(tail -n 1 "$log_dir/python.log")
for kind in passed failed error skipped; do
  n=$(grep -oE "[0-9]+ $kind" <<<"$pytest_summary" | cut -d' ' -f1 || true)
  n=${n:-0}
  case $kind in
    passed) passed=$((passed + n)) ;;
    failed | error) failed_tests=$((failed_tests + n)) ;;
    skipped) skipped=$((skipped + n)) ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  # CI keeps only the end of a run's output: repeat each failed test's name, message and the top of
  # its stack here, where it is still seen, instead of somewhere in thousands of passing lines.
  if grep -qE '^ +Failed [^:]' "$log_dir/dotnet.log"; then
    echo "run-tests: failed C# tests (name, message, top of the stack):" >&2
    awk '/^ +Failed [^:]/ { shown = 0; inside = 1 }
         /^ +(Passed|Skipped) / || /^Test Run / { inside = 0 }
         inside && shown < 30 { print; shown++ }' "$log_dir/dotnet.log" >&2
  fi
  grep -E '^(FAILED|ERROR) ' "$log_dir/python.log" >&2 || true
  echo "run-tests: ${#failed[@]} step(s) failed:" >&2
  printf 'run-tests:   %s\n' "${failed[@]}" >&2
  echo "$passed passed, $failed_tests failed, $skipped skipped"
  exit 1
fi
echo "run-tests: every step passed"
echo "$passed passed, $failed_tests failed, $skipped skipped"
