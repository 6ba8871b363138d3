"""tests/conftest.py: under CI=true a skipped test (or skipped module) fails; xfail stays."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = '''
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("promtool not installed")

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False
'''


def run_sample(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.skip("no engine", allow_module_level=True)\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:xdist", "-p", "no:cacheprovider",
         "--continue-on-collection-errors", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, check=False,
    )


def test_without_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    proc = run_sample(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in proc.stdout


def test_under_ci_every_skip_fails_with_the_reason(tmp_path: Path) -> None:
    proc = run_sample(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    assert "skipped" not in proc.stdout.splitlines()[-1]
    assert "1 passed" in proc.stdout and "1 xfailed" in proc.stdout
    assert "SKIPPED under CI=true, which counts as a failure: Skipped: promtool not installed" in proc.stdout
    assert "no engine" in proc.stdout
