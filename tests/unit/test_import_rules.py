"""House rules as an import graph: wmtp_core and vendor never import prefect or mlflow at module level; wmtp_core
never imports tasks/flows/deployments, vendor imports nothing of the project, tasks never import flows (at any level,
lazy imports included); an installed wheel can import the flow."""

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"prefect", "mlflow"}
PURE_PACKAGES = ("wmtp_core", "vendor")


def _module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in tree.body:  # only top-level statements; function bodies may import lazily
        stmts = [node]
        if isinstance(node, ast.If | ast.Try):
            stmts = list(ast.walk(node))
        for stmt in stmts:
            if isinstance(stmt, ast.Import):
                found += [(stmt.lineno, a.name.split(".")[0]) for a in stmt.names]
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                found.append((stmt.lineno, stmt.module.split(".")[0]))
    return found


def _python_files() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_level_prefect_or_mlflow(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [(line, mod) for line, mod in _module_level_imports(tree) if mod in FORBIDDEN]
    assert not bad, f"{path}: module-level import of {bad}"


def test_importing_every_pure_module_loads_neither() -> None:
    modules = []
    for path in _python_files():
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if rel.name != "__main__":
            modules.append(".".join(parts))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'mlflow'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


PROJECT = ("wmtp_core", "vendor", "tasks", "flows", "deployments")
NEVER = {  # package -> project packages it must not import, anywhere in its code
    "wmtp_core": {"tasks", "flows", "deployments"},
    "vendor": {"wmtp_core", "tasks", "flows", "deployments"},
    "tasks": {"flows"},
}


def _all_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Every absolute import in the file, function bodies included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_import_graph_follows_the_layering() -> None:
    bad = []
    for package, forbidden in NEVER.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            bad += [f"{path.relative_to(ROOT)}:{line}: imports {mod}" for line, mod in _all_imports(tree)
                    if mod in forbidden]
    assert not bad, "\n".join(bad)


def test_the_rule_checker_sees_lazy_imports() -> None:
    tree = ast.parse("def f():\n    from flows.wmtp import wmtp\n    import tasks.training\n")
    assert _all_imports(tree) == [(2, "flows"), (3, "tasks")]


def test_every_project_package_is_in_the_wheel() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert sorted(config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]) == sorted(PROJECT)
    assert all((ROOT / pkg / "__init__.py").is_file() for pkg in PROJECT)


@pytest.mark.slow
def test_installed_wheel_imports_the_flow(tmp_path: Path) -> None:
    """Build the wheel, install it (no deps) into a fresh venv whose only other path is this environment's
    site-packages (third-party libraries; the editable project is not on it), import flows.wmtp from outside the
    repository and check it came from the wheel."""
    uv = shutil.which("uv")
    assert uv, "uv not on PATH: cannot build the wheel"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT"))}
    run = lambda *cmd, **kw: subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, **kw)  # noqa: E731
    built = run(uv, "build", "--wheel", "--offline", "--out-dir", str(tmp_path / "dist"), cwd=ROOT)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("wmtp-*.whl"))
    venv = tmp_path / "venv"
    made = run(uv, "venv", "-q", str(venv), "--python", sys.executable)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run(uv, "pip", "install", "-q", "--python", str(python), "--no-deps", "--offline", str(wheel))
    assert installed.returncode == 0, installed.stderr
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    Path(purelib, "_third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = ("import flows.wmtp, deployments.blocks, tasks.training, wmtp_core.experiments\n"
            "print(flows.wmtp.__file__); print(flows.wmtp.wmtp.name)")
    proc = run(str(python), "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, name = proc.stdout.split()
    assert Path(where).is_relative_to(venv) and name == "wmtp"
