"""House rule: project code never imports boto3/botocore (the vessl SDK may, transitively)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIRS = ("wmtp_core", "vendor", "tasks", "flows", "deployments", "benchmarks", "tests")
FORBIDDEN = {"boto3", "botocore", "s3transfer"}


def _project_files() -> list[Path]:
    return sorted(p for d in PROJECT_DIRS if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):  # every import, at any depth (lazy imports count too)
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


@pytest.mark.parametrize("path", _project_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_boto3_or_botocore_import(path: Path) -> None:
    bad = _imported_roots(ast.parse(path.read_text(encoding="utf-8"))) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; use VESSL Storage through the vessl SDK"


def test_checker_sees_lazy_and_dynamic_imports() -> None:
    code = "def f():\n    import boto3.session\n    importlib.import_module('botocore.client')\n"
    assert _imported_roots(ast.parse(code)) >= {"boto3", "botocore"}
