"""Fail when a module or a function outgrows docs/STYLE.md's sizes.

A module past 400 lines or a function past 60 (from its first decorator to its last line) is
two things in one place; split it by domain. Tests and the generated gRPC code (shared/api) are
not checked.

Usage: `python scripts/check_sizes.py [ROOT]`; prints each offender, exits 1 if there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
CHECKED = ("shared", "services", "training", "operations", "cli", "bench", "scripts")
GENERATED = ("shared/api",)


def checked_files(root: Path) -> list[Path]:
    """Every Python file under the checked folders, generated code aside."""
    files = []
    for folder in CHECKED:
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not relative.startswith(GENERATED):
                files.append(path)
    return files


def function_lengths(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function and method in `tree`."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                name = f"{prefix}{child.name}"
                found.append((name, first, child.end_lineno - first + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def offenders(path: Path, relative: str) -> list[str]:
    """The size complaints about one file, one line each."""
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    found = []
    if lines > MAX_MODULE_LINES:
        found.append(f"{relative}: module has {lines} lines (max {MAX_MODULE_LINES})")
    for name, first, length in function_lengths(ast.parse(text, filename=relative)):
        if length > MAX_FUNCTION_LINES:
            found.append(
                f"{relative}:{first}: {name} has {length} lines (max {MAX_FUNCTION_LINES})"
            )
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".").resolve()
    found = [
        line
        for path in checked_files(root)
        for line in offenders(path, path.relative_to(root).as_posix())
    ]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} size offender(s); split by domain (docs/STYLE.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
