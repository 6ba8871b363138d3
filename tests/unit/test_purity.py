"""consensus/ and contracts/ must stay free of I/O, clocks and randomness so the
simulator can run them deterministically (DESIGN.md §1)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "asyncio", "aiohttp", "socket", "time", "random", "os", "threading", "sqlite3",
    "subprocess", "secrets", "datetime", "uvloop", "multiprocessing", "shutil", "pathlib",
    "io", "select", "selectors", "node",
}


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ["consensus", "contracts"])
def test_package_imports_nothing_that_does_io(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_modules(f) & FORBIDDEN) for f in files
    }
    offenders = {f: mods for f, mods in offenders.items() if mods}
    assert offenders == {}, f"I/O imports in pure packages: {offenders}"


def test_checker_sees_a_forbidden_import(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom os import path\n")
    assert imported_modules(bad) & FORBIDDEN == {"time", "os"}
