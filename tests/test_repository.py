"""Repository hygiene: lint and format are clean, and CI runs exactly the README's test command."""

import re
import subprocess
import sys

from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set up")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.DOTALL)


def test_the_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "instructir" in main_job and tests.rstrip().endswith("pytest")
    assert tests in (REPO / ".ci/run").read_text()


def test_ruff_lint_and_format_are_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
