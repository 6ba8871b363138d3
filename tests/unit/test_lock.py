"""uv.lock is the lock: every dependency (runtime, dev, build backend) for every platform.
requirements/lock.txt is its pip-installable export with hashes, and
requirements/runtime.txt (the image's wheelhouse) the runtime subset, pin for pin.
`make lock` regenerates all three; `make install` installs exactly the lock."""

import importlib.metadata
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(path: pathlib.Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonical(match.group(1))
            pins[current] = (match.group(2), frozenset())
            continue
        hashed = re.match(r"^\s+--hash=(sha256:[0-9a-f]{64})", line)
        if hashed and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes | {hashed.group(1)})
    return pins


def requirement_names(specs: list[str]) -> set[str]:
    return {canonical(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
UV_LOCK = {canonical(p["name"]): p.get("version") for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
RUNTIME = requirement_names(PROJECT["dependencies"])
DEV = requirement_names(PROJECT["optional-dependencies"]["dev"])
LOCK = parse(ROOT / "requirements" / "lock.txt")
RUNTIME_LOCK = parse(ROOT / "requirements" / "runtime.txt")
# Pins with an environment marker (e.g. colorama on Windows) may be absent here.
CONDITIONAL = {
    canonical(m.group(1))
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines()
    if (m := PIN.match(line)) and ";" in line
}


def test_lock_pins_every_direct_dependency_and_the_build_backend_with_hashes() -> None:
    build = requirement_names(PYPROJECT["dependency-groups"]["build"])
    assert build == {"setuptools", "wheel"}
    assert RUNTIME | DEV | build <= set(LOCK)
    unhashed = sorted(name for name, (_, hashes) in LOCK.items() if not hashes)
    assert unhashed == []


def test_the_pip_export_is_uv_lock_pin_for_pin() -> None:
    differing = {name: (version, UV_LOCK.get(name)) for name, (version, _) in LOCK.items()
                 if UV_LOCK.get(name) != version}
    assert differing == {}, "requirements/lock.txt disagrees with uv.lock; run `make lock`"
    missing = set(UV_LOCK) - set(LOCK) - {"gridchain"} - CONDITIONAL
    assert missing == set(), "uv.lock has packages the export lacks; run `make lock`"


def test_runtime_file_is_the_runtime_subset_of_the_lock() -> None:
    assert set(RUNTIME_LOCK) >= RUNTIME
    assert not (DEV - RUNTIME) & set(RUNTIME_LOCK), "dev tools leaked into the image's pins"
    differing = {
        name: (pin, LOCK.get(name)) for name, pin in RUNTIME_LOCK.items() if LOCK.get(name) != pin
    }
    assert differing == {}, "runtime.txt disagrees with lock.txt; run `make lock`"


def test_this_environment_has_exactly_the_locked_versions() -> None:
    """`make install` installs the lock; a venv built otherwise fails here."""
    wrong = {}
    for name, (version, _) in LOCK.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name not in CONDITIONAL:
                wrong[name] = (None, version)
            continue
        if installed != version:
            wrong[name] = (installed, version)
    assert wrong == {}, f"installed != locked: {wrong}; run `make install`"
