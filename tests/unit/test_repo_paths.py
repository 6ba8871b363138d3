"""The repository stands on its own: no tracked file names a path of a developer's
machine (/work/..., /root/..., /home/..., ~/...) or a note that lives outside the
repository (a sibling shared/ or notes/ directory). Design references go to docs/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SELF = Path(__file__).resolve()

FORBIDDEN = re.compile(
    r"(?:^|[^\w.$}-])/(?:work|root|home|Users)/"  # absolute paths of a machine
    r"|(?:^|[\s`(\"'])~/"  # a user's home directory
    r"|\bshared/(?:DESIGN|MARKET|STYLE)\b"  # the project notes outside the repository
    r"|\bnotes/[\w-]+\.md\b"
)


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
    paths = [ROOT / name for name in listing.stdout.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and p.resolve() != SELF]


def offending_lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)]


def test_no_tracked_file_references_a_machine_path_or_an_outside_note() -> None:
    files = tracked_files()
    assert len(files) > 50, "git ls-files found too few files"
    offenders = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        if hits := offending_lines(text):
            offenders[str(path.relative_to(ROOT))] = hits
    assert offenders == {}, f"machine paths or outside notes referenced: {offenders}"


def test_design_references_resolve_inside_the_repository() -> None:
    assert (ROOT / "docs" / "DESIGN.md").is_file() and (ROOT / "docs" / "MARKET.md").is_file()


def test_the_pattern_catches_what_it_must_and_spares_temp_dirs() -> None:
    bad = [
        "see /work/notes/deploy.md", "documented in " + "/ro" + "ot/x", "cd /home/alice/repo",
        "The design is in `../shared/DESIGN.md`", "(see ~/notes.txt)", "notes/node-cli.md",
    ]
    good = [
        'mktemp -d "${TMPDIR:-/tmp}/gridchain-base.XXXXXX"', "COPY wheelhouse/ /tmp/wheels/",
        "--home-dir /data --no-create-home", "docs/DESIGN.md §4", "http://127.0.0.1:8081/v1/status",
        "GRIDCHAIN_HOME=/data/home/x",
    ]
    assert [line for line in bad if not offending_lines(line)] == []
    assert [line for line in good if offending_lines(line)] == []
