"""The import rules of docs/ARCHITECTURE.md, checked over every module (imports inside functions
included): `shared/` imports nothing above it, no deployable imports another, nothing outside
the CLI imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "training", "operations", "cli", "bench", "tests")
# What each top-level package may not import. `services` is checked per deployable below.
FORBIDDEN = {
    "shared": {"services", "training", "operations", "cli", "bench", "tests"},
    "services": {"training", "operations", "cli", "bench", "tests"},
    "training": {"services", "operations", "cli", "bench", "tests"},
    "operations": {"cli", "bench", "tests"},
    "bench": {"cli", "tests"},
    "cli": {"bench", "tests"},
    "tests": set(),
}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "shared/api" not in p.as_posix())


def imported_modules(path: Path) -> list[str]:
    """Every absolute module name `path` imports, at any depth of its code."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layout_problems(path: Path, imported: list[str]) -> list[str]:
    """What `path` (a module of the repository) imports against the rules."""
    parts = path.relative_to(ROOT).parts
    package = parts[0]
    problems = []
    for name in imported:
        top = name.split(".")[0]
        if top in FORBIDDEN[package]:
            problems.append(f"{package} imports {name}")
        if package == "services" and top == "services":
            mine, theirs = parts[1], name.split(".")[1] if "." in name else ""
            if theirs != mine:
                problems.append(f"deployable {mine} imports {name}")
        if top == "cli" and package == "tests" and not _cli_test(path, name):
            problems.append(f"{name} imported by a test that is not a CLI test")
    return [f"{path.relative_to(ROOT)}: {p}" for p in problems]


def _cli_test(path: Path, name: str) -> bool:
    """Tests reach the CLI through its entry point `cli.app`; only the CLI's own unit tests
    (tests/unit/test_*_cli.py) may import its parsing helpers."""
    return name == "cli.app" or (path.parent.name == "unit" and path.stem.endswith("_cli"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layout(package: str) -> None:
    problems = [
        problem
        for path in _modules(package)
        for problem in layout_problems(path, imported_modules(path))
    ]
    assert not problems, "\n".join(problems)


def test_the_rules_catch_what_they_forbid() -> None:
    """The checker itself fails on each kind of violation (a test that cannot fail is none)."""
    cases = {
        ROOT / "shared" / "x.py": ["services.gateway.config"],
        ROOT / "services" / "gateway" / "x.py": ["services.ingestion.processor"],
        ROOT / "training" / "x.py": ["operations.serve"],
        ROOT / "operations" / "x.py": ["cli.app"],
        ROOT / "tests" / "integration" / "test_x.py": ["cli.serve_commands"],
    }
    for path, imported in cases.items():
        assert layout_problems(path, imported), path
    assert not layout_problems(ROOT / "services" / "gateway" / "x.py", ["services.gateway.search"])
    assert not layout_problems(
        ROOT / "tests" / "unit" / "test_search_cli.py", ["cli.search_commands"]
    )


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.gateway import app\n    import cli.app\n")
    assert imported_modules(module) == ["services.gateway", "cli.app"]
