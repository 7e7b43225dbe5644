"""No import circle inside aejax/, counting the imports inside functions too: each
module's imports are read from its source (``ast``), so an import a test never runs
still counts. A layer may import the layers below it, never one above."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def module_files() -> dict[str, pathlib.Path]:
  """``aejax.x.y`` -> its file, for every module and package of aejax."""
  files = {}
  for path in (ROOT / "aejax").rglob("*.py"):
    parts = path.relative_to(ROOT).with_suffix("").parts
    files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return files


def _type_checking(node: ast.If) -> bool:
  test = node.test
  return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
      "TYPE_CHECKING")


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
  """Every dotted name an ``import`` or ``from ... import`` anywhere in ``tree`` may
  load (``from a import b``: ``a.b`` and ``a``), relative imports resolved; imports
  under ``if TYPE_CHECKING:`` never run, so they do not count."""
  names = []

  def visit(node):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, ast.If) and _type_checking(child):
        for other in child.orelse:
          visit_one(other)
      else:
        visit_one(child)

  def visit_one(node):
    if isinstance(node, ast.Import):
      names.extend(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = module.split(".")[:None if is_package else -1]
        package = package[:len(package) - node.level + 1]
        base = ".".join([*package, *([base] if base else [])])
      names.extend([base, *(f"{base}.{alias.name}" for alias in node.names)])
    visit(node)

  visit(tree)
  return names


def import_graph() -> dict[str, set[str]]:
  """module -> the aejax modules it imports. Importing ``a.b.c`` runs the packages
  ``a.b`` and ``a.b.c``'s ``__init__`` too, so they count, except a module's own
  packages (which are already being imported when it runs)."""
  files = module_files()
  graph = {}
  for module, path in files.items():
    targets = set()
    for name in imported_names(ast.parse(path.read_text()), module,
                               path.name == "__init__.py"):
      while name and name not in files:
        name = name.rpartition(".")[0]
      parts = name.split(".")
      for i in range(2, len(parts) + 1):  # "aejax" itself imports nothing
        target = ".".join(parts[:i])
        if parts[0] == "aejax" and not (module == target or module.startswith(target + ".")):
          targets.add(target)
    graph[module] = targets
  return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def connect(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in graph[node]:
      if target not in index:
        connect(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in graph:
    if node not in index:
      connect(node)
  return found


def test_the_graph_sees_imports_inside_functions():
  tree = ast.parse("def f():\n  from aejax import analysis\n  import aejax.codec\n"
                   "if TYPE_CHECKING:\n  from aejax import trainer\n")
  names = imported_names(tree, "aejax.models.x", False)
  assert "aejax.analysis" in names and "aejax.codec" in names
  assert "aejax.trainer" not in names
  assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_inside_aejax():
  graph = import_graph()
  assert graph["aejax.models.ratedistortion"] >= {"aejax.models.coding"}
  assert "aejax.analysis" in graph["aejax.trained"]  # one imported inside a function
  assert circles(graph) == []
