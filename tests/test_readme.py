"""The README's set-up commands are the ones CI runs."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / "README.md").read_text()
  ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
  assert ci_command.startswith("python3 -m venv") and "pytest" in ci_command
  assert f"    {ci_command}\n" in readme
