"""The README's quick-start commands stay true: CI runs the test command verbatim,
and the demo command's pieces exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash)\n(.+?)\n```", section, re.DOTALL)


def test_exactly_two_quick_start_commands():
    cmds = quick_start_commands()
    assert len(cmds) == 2, cmds
    assert "ddn demo" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1].strip() in ci
