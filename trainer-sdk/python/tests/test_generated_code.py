"""The committed gRPC code is what generate_protos.sh makes from protos/checkpoint/v1 today."""

import filecmp
import subprocess
from pathlib import Path

from conftest import PYTHON_DIR, REPO

COMMITTED = PYTHON_DIR / "checkpoint_sdk" / "_proto"


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))


def test_committed_generated_code_matches_the_protos(tmp_path):
    subprocess.run([str(PYTHON_DIR / "generate_protos.sh"), str(tmp_path)], check=True, capture_output=True)
    assert _files(tmp_path) == _files(COMMITTED)
    stale = [name for name in _files(COMMITTED) if not filecmp.cmp(tmp_path / name, COMMITTED / name, shallow=False)]
    assert not stale, (f"{stale} differ from what {PYTHON_DIR / 'generate_protos.sh'} generates from "
                       f"{REPO / 'protos/checkpoint/v1'}: run it and commit the result")


def test_generated_code_imports_from_the_package_and_names_the_contract():
    from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2, checkpoint_pb2_grpc

    service = checkpoint_pb2.DESCRIPTOR.services_by_name["CheckpointService"]
    assert {m.name for m in service.methods} == {
        "Attach", "BeginCheckpoint", "ReportDump", "WaitForCheckpoint", "NotifyTermination",
        "GetLatestCheckpoint", "GetStatus"}
    assert checkpoint_pb2.DESCRIPTOR.name == "checkpoint/v1/checkpoint.proto"
    assert hasattr(checkpoint_pb2_grpc, "CheckpointServiceStub")
