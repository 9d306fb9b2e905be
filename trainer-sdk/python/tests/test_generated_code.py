"""The committed gRPC code is what generate_protos.sh makes from protos/checkpoint/v1 today, and it is code that
every protobuf runtime from 3.21 (Debian 12) to current (upb wheels) imports."""

import ast
import filecmp
import os
import subprocess
import sys
from pathlib import Path

from conftest import PYTHON_DIR, REPO

COMMITTED = PYTHON_DIR / "checkpoint_sdk" / "_proto"
PB2 = COMMITTED / "checkpoint" / "v1" / "checkpoint_pb2.py"
PB2_GRPC = COMMITTED / "checkpoint" / "v1" / "checkpoint_pb2_grpc.py"

# The descriptor classes that upb (protobuf >= 4.21) refuses to have constructed by a _pb2 module
# ("Descriptors cannot be created directly"): old protoc (< 3.19) generated calls to every one of them.
DESCRIPTOR_CLASSES = {"FileDescriptor", "Descriptor", "FieldDescriptor", "EnumDescriptor", "EnumValueDescriptor",
                      "OneofDescriptor", "ServiceDescriptor", "MethodDescriptor"}


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in (".py", ".pyi"))


def _called_names(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            yield func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_committed_generated_code_matches_the_protos(tmp_path):
    result = subprocess.run([str(PYTHON_DIR / "generate_protos.sh"), str(tmp_path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, f"generate_protos.sh failed:\n{result.stdout}\n{result.stderr}"
    assert _files(tmp_path) == _files(COMMITTED)
    stale = [name for name in _files(COMMITTED) if not filecmp.cmp(tmp_path / name, COMMITTED / name, shallow=False)]
    assert not stale, (f"{stale} differ from what {PYTHON_DIR / 'generate_protos.sh'} generates from "
                       f"{REPO / 'protos/checkpoint/v1'}: run it and commit the result")


def test_type_stubs_ship_next_to_the_generated_module():
    stub = PB2.with_suffix(".pyi")
    assert stub.is_file(), f"{stub} is missing: generate_protos.sh writes it with --pyi_out"
    assert "class ReportDumpRequest(_message.Message)" in stub.read_text()


def test_generated_module_builds_descriptors_from_the_serialized_file_not_directly():
    called = set(_called_names(PB2))
    direct = sorted(called & DESCRIPTOR_CLASSES)
    assert not direct, (f"{PB2.name} constructs {direct} directly: protobuf >= 4.21 (upb) refuses to import it "
                        f"(\"Descriptors cannot be created directly\"); regenerate with protoc >= 3.20")
    assert {"AddSerializedFile", "BuildMessageAndEnumDescriptors", "BuildTopDescriptorsAndMessages"} <= called


def test_generated_code_carries_no_runtime_version_check():
    # protoc >= 27 writes ValidateProtobufRuntimeVersion (raises on any runtime older than that protoc, e.g.
    # Debian's 3.21); grpcio-tools >= 1.63 writes a GRPC_GENERATED_VERSION check that refuses older grpcio.
    imports = set(_imported_modules(PB2)) | set(_imported_modules(PB2_GRPC))
    assert "google.protobuf.runtime_version" not in imports
    assert "ValidateProtobufRuntimeVersion" not in set(_called_names(PB2))
    assert "GRPC_GENERATED_VERSION" not in PB2_GRPC.read_text()


def _import_in_child(implementation: str):
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=implementation, PYTHONPATH=str(PYTHON_DIR))
    # Direct descriptor construction is what upb refuses; the pure-Python runtime of 3.21 reports the same
    # thing as a DeprecationWarning ("Call to deprecated create function FileDescriptor()"), made an error here.
    code = ("from google.protobuf.internal import api_implementation as a\n"
            "from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2 as p, checkpoint_pb2_grpc as g\n"
            "m = p.ReportDumpRequest(files=['model.pt'], metadata={'k': 'v'})\n"
            "assert p.ReportDumpRequest.FromString(m.SerializeToString()) == m\n"
            "assert p.TrainerInfo.DESCRIPTOR.fields_by_name['trainer_id'].GetOptions().deprecated\n"
            "assert hasattr(g, 'CheckpointServiceStub')\n"
            "print(a.Type())\n")
    return subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], env=env,
                          capture_output=True, text=True, timeout=60)


def test_generated_code_imports_under_the_pure_python_runtime_without_descriptor_warnings():
    result = _import_in_child("python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"


def test_generated_code_imports_under_the_default_runtime_of_this_machine():
    # Debian 12's python3-protobuf (3.21) defaults to its C++ implementation; a PyPI wheel >= 4.21 to upb.
    # No upb runtime is installable here (PyPI is unreachable), so upb itself is not exercised.
    env_impl = os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "")
    from google.protobuf.internal import api_implementation
    result = _import_in_child(env_impl or api_implementation.Type())
    assert result.returncode == 0, result.stderr


def test_generated_code_imports_from_the_package_and_names_the_contract():
    from checkpoint_sdk._proto.checkpoint.v1 import checkpoint_pb2, checkpoint_pb2_grpc

    service = checkpoint_pb2.DESCRIPTOR.services_by_name["CheckpointService"]
    assert {m.name for m in service.methods} == {
        "Attach", "BeginCheckpoint", "ReportDump", "WaitForCheckpoint", "NotifyTermination",
        "GetLatestCheckpoint", "GetStatus", "StartDrill"}
    assert checkpoint_pb2.DESCRIPTOR.name == "checkpoint/v1/checkpoint.proto"
    assert hasattr(checkpoint_pb2_grpc, "CheckpointServiceStub")
