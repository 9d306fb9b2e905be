"""The distribution's metadata: a free name, the project's one version, the licence, and what ships with it.

No wheel is built here: the build needs setuptools >= 77 (SPDX licence expressions) and PyPI is not reachable;
the package-data configuration is checked instead.
"""

import fnmatch
import re
import sys

import pytest

from conftest import PYTHON_DIR, REPO

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")

PYPROJECT = tomllib.loads((PYTHON_DIR / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_the_distribution_is_not_the_unrelated_checkpoint_sdk_on_pypi_and_imports_as_checkpoint_sdk():
    assert PROJECT["name"] != "checkpoint-sdk"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", PROJECT["name"]), "a normalised, multi-word name"
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["checkpoint_sdk*"]


def test_version_is_the_one_of_the_whole_project():
    # Read as text: MSBuild accepts the file's comments, which an XML parser refuses ("--" inside a comment).
    versions = re.findall(r"<Version>\s*([^<\s]+)\s*</Version>", (REPO / "Directory.Build.props").read_text())
    assert len(versions) == 1, f"Directory.Build.props has {versions}"
    assert PROJECT["version"] == versions[0]
    import checkpoint_sdk

    assert checkpoint_sdk.__version__ == versions[0]


def test_licence_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    assert PROJECT["license"] == "Apache-2.0"
    for name in PROJECT["license-files"]:
        text = (PYTHON_DIR / name).read_text()
        assert "Apache License" in text and "Version 2.0" in text
    # PEP 639: an SPDX expression excludes licence classifiers.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) >= 77, f"{setuptools}: SPDX licence expressions need setuptools >= 77"


def test_metadata_a_newcomer_needs():
    assert PROJECT["readme"] == "README.md" and (PYTHON_DIR / "README.md").is_file()
    assert PROJECT["requires-python"] == ">=3.9"
    urls = PROJECT["urls"]
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = PROJECT["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert all(" :: " in c for c in classifiers)
    assert {"grpcio", "protobuf"} <= {re.split(r"[<>=!~ ]", d)[0] for d in PROJECT["dependencies"]}


def test_py_typed_and_the_generated_stubs_ship_as_package_data():
    package = PYTHON_DIR / "checkpoint_sdk"
    assert (package / "py.typed").is_file(), "PEP 561 marker missing"
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["checkpoint_sdk"]
    shipped = [p.relative_to(package).as_posix() for p in package.rglob("*")
               if p.is_file() and any(fnmatch.fnmatch(p.relative_to(package).as_posix(), pat) for pat in patterns)]
    assert "py.typed" in shipped
    assert "_proto/checkpoint/v1/checkpoint_pb2.pyi" in shipped
