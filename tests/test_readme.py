"""The README stays short and in step with CI, the model registry, the configs and
their results pages."""

import ast
import pathlib
import re

import pytest

from aejax import models

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
README_MAX_LINES = 220
DOCSTRING_MAX_LINES = 15


def config_names() -> list[str]:
  return sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("base", "__init__"))


def models_table(readme: str) -> list[dict[str, str]]:
  """The rows of the table under the README's "## Models" heading, by column name."""
  section = readme.split("\n## Models\n", 1)[1].split("\n## ", 1)[0]
  lines = [line for line in section.splitlines() if line.startswith("|")]
  split = lambda line: [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
  header = split(lines[0])
  return [dict(zip(header, split(line))) for line in lines[2:]]


def row_name(row: dict[str, str]) -> str:
  """`vae:iwae` -> vae: the config file a row is for."""
  return row["config"].strip("`").split(":")[0].removesuffix(".py")


def config_docstring_lines(path: pathlib.Path) -> int:
  """Source lines of a module's docstring, its quotes included (0 if it has none)."""
  first = ast.parse(path.read_text()).body[0]
  if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
          and isinstance(first.value.value, str)):
    return 0
  return first.end_lineno - first.lineno + 1


@pytest.fixture(scope="module")
def readme() -> str:
  return (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command(readme):
  ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
  assert ci_command.startswith("python3 -m venv") and "pytest" in ci_command
  assert f"    {ci_command}\n" in readme


def test_readme_is_short(readme):
  lines = len(readme.splitlines())
  assert lines <= README_MAX_LINES, (
      f"README.md has {lines} lines (at most {README_MAX_LINES}): move tables and "
      "history into docs/")


def test_every_model_family_has_a_row(readme):
  """Every family aejax ships (registered from aejax/models/; other tests register
  their own in the same process)."""
  families = {row["family"].strip("`") for row in models_table(readme)}
  shipped = {name for name in models.names()
             if models.get(name).build.__module__.startswith("aejax.models.")}
  assert {"mlp", "conv", "vae"} <= shipped
  missing = sorted(shipped - families)
  assert not missing, f"families without a row in README's models table: {missing}"


def test_every_config_has_a_row_and_a_results_page(readme):
  rows = models_table(readme)
  names = config_names()
  assert names, "no config files found"
  missing = sorted(set(names) - {row_name(row) for row in rows})
  assert not missing, f"configs without a row in README's models table: {missing}"
  for row in rows:
    name = row_name(row)
    assert name in names, f"README's models table names {row['config']}, which has no config file"
    page = f"docs/results/{name}.md"
    assert f"({page})" in row["results"], f"the row of {row['config']} does not link {page}"
    assert (ROOT / page).is_file(), f"{page} is missing"


@pytest.mark.parametrize("name", config_names())
def test_config_docstring_is_command_and_expectation(name):
  path = CONFIGS / f"{name}.py"
  lines = config_docstring_lines(path)
  assert 0 < lines <= DOCSTRING_MAX_LINES, (
      f"{name}.py's docstring has {lines} lines (1 to {DOCSTRING_MAX_LINES}): keep the "
      f"command and the expected figure, move the rest to docs/results/{name}.md")
  doc = ast.get_docstring(ast.parse(path.read_text()))
  assert f"--config experiments/configs/{name}.py" in doc, f"{name}.py's launch command"
  assert f"docs/results/{name}.md" in doc, f"{name}.py's docstring links its results page"


def test_docs_pages_the_readme_links_exist(readme):
  for target in re.findall(r"\]\(((?:docs|experiments|tests)/[^)#]*)", readme):
    assert (ROOT / target).exists(), f"README links {target}, which does not exist"
