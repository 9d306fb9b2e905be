#!/usr/bin/env bash
# Runs the Python trainer SDK's tests (real sidecar and trainer processes). Needs the published sidecar
# (artifacts/sidecar/checkpoint-sidecar, or CHECKPOINT_SIDECAR_BIN) and the Debian packages listed in README.md.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
/usr/bin/python3 -m pytest -q tests "$@"
exit $?
