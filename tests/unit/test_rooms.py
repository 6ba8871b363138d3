"""The rooms of the code base (docs/ARCHITECTURE.md) hold: the layers import one way,
node/'s sub-packages keep their borders, the page lists exactly the sub-packages that
exist, and every node/ file is small and says its role in a docstring."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
MAX_LINES = 450
OVER_LIMIT: dict[str, int] = {}
"""Files allowed past MAX_LINES until they are split, each with the most lines it may have."""

# (importing package, forbidden prefixes, why)
RULES = [
    ("consensus", ("contracts", "node"), "consensus imports neither contracts nor node"),
    ("contracts", ("node",), "contracts never imports node"),
    ("node/api", ("node.chain", "node.net", "node.ops"),
     "the API reaches the chain only through the NodeBackend protocol (never storage)"),
    ("node/net", ("node.api",), "the peer network never imports the API"),
]


def imports_of(path: pathlib.Path) -> set[str]:
    """Every absolute module an ``import`` names (also inside functions and TYPE_CHECKING),
    with ``from m import a`` giving both ``m`` and ``m.a``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def breaks(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


def rel(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize(("package", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_import_rules(package: str, forbidden: tuple[str, ...], why: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = {rel(f): sorted(m for m in imports_of(f) if breaks(m, forbidden)) for f in files}
    offenders = {f: mods for f, mods in offenders.items() if mods}
    assert offenders == {}, f"{why}: {offenders}"


def test_the_rule_checker_sees_lazy_and_type_only_imports(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.chain import storage\n"
                   "def f():\n    import node.api.app\n")
    found = {m for m in imports_of(bad) if breaks(m, ("node.chain", "node.api"))}
    assert found == {"node.chain", "node.chain.storage", "node.api.app"}
    assert not breaks("node.chainx", ("node.chain",))


def listed_subpackages() -> set[str]:
    """The ``node/<name>/`` entries of the sub-package table in ARCHITECTURE.md."""
    return set(re.findall(r"^\| `node/(\w+)/` \|", ARCHITECTURE.read_text(), flags=re.MULTILINE))


def test_architecture_lists_exactly_the_subpackages_of_node() -> None:
    existing = {p.parent.name for p in (ROOT / "node").glob("*/__init__.py")}
    assert existing, "node/ has no sub-packages"
    assert listed_subpackages() == existing


def test_every_node_path_in_architecture_exists() -> None:
    paths = set(re.findall(r"`(node/[\w/]+(?:\.py|/))`", ARCHITECTURE.read_text()))
    files = set(re.findall(r"`(\w+\.py)`", ARCHITECTURE.read_text()))
    assert len(paths) >= 7 and len(files) >= 20, "the map names too few files to be a map"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
    every = {p.name for p in (ROOT / "node").rglob("*.py")}
    assert sorted(f for f in files if f not in every) == []


def test_no_node_file_is_too_long() -> None:
    lengths = {rel(f): len(f.read_text().splitlines()) for f in (ROOT / "node").rglob("*.py")}
    too_long = {f: n for f, n in lengths.items() if n > OVER_LIMIT.get(f, MAX_LINES)}
    assert too_long == {}, f"split these files (at most {MAX_LINES} lines each): {too_long}"
    stale = {f: n for f, n in lengths.items() if f in OVER_LIMIT and n <= MAX_LINES}
    assert stale == {}, f"back under {MAX_LINES} lines: remove them from OVER_LIMIT: {stale}"


def test_every_node_file_opens_with_a_docstring() -> None:
    missing = [rel(f) for f in sorted((ROOT / "node").rglob("*.py"))
               if not ast.get_docstring(ast.parse(f.read_text()))]
    assert missing == []
