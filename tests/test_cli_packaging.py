"""Packaging: the mapped cli/ folder installs as textgen.cli, editable and as a wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def packages_on_disk() -> set[str]:
    found = {
        ".".join(("textgen", *p.parent.relative_to(ROOT / "textgen").parts))
        for p in (ROOT / "textgen").rglob("__init__.py")
    }
    found |= {
        ".".join(("textgen.cli", *p.parent.relative_to(ROOT / "cli").parts))
        for p in (ROOT / "cli").rglob("__init__.py")
    }
    return found


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    assert packages_on_disk() == listed


def test_textgen_cli_is_this_checkouts_cli_folder():
    import textgen.cli

    assert Path(textgen.cli.__file__).resolve().parent == ROOT / "cli", "run `pip install -e .` in this checkout"


def test_wheel_holds_the_cli_under_textgen(tmp_path: Path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0:
        pytest.fail(build.stderr[-2000:])
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"textgen/cli/app.py", "textgen/cli/tasks.py", "textgen/io.py", "textgen/tasks/title.py"} <= names
    assert not any(n.startswith("cli/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "textgen = textgen.cli.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_ci_runs_exactly_the_readmes_two_set_up_commands():
    """CI must test the install users get: .ci/run executes the README's two Start commands, in
    order, nothing before them; the first takes PyTorch's CPU build (a newcomer's plain `pip install .`
    pulled 3.2 GB of CUDA libraries for a CPU-only machine)."""
    import re
    import subprocess

    root = Path(__file__).resolve().parents[1]
    start = (root / "README.md").read_text(encoding="utf-8").split("## Start", 1)[1].split("\n## ", 1)[0]
    blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)```", start, re.S)]
    assert len(blocks) == 2
    assert blocks[0].startswith("pip install torch==") and "whl/cpu" in blocks[0] and "textgen title" in blocks[0]
    assert blocks[1] == "pip install -e '.[test]' && pytest"
    script = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" not in script.replace("README", "")  # no install of its own
    # The script's extraction step, run alone, yields exactly those commands.
    extract = script.split("python3 - <<'PY' > /tmp/textgen-ci-commands.sh\n", 1)[1].split("\nPY\n", 1)[0]
    printed = subprocess.run(["python3", "-c", extract], cwd=root, capture_output=True, text=True, check=True).stdout
    assert printed.splitlines() == ["set -euxo pipefail", *blocks]
