"""ARCHITECTURE.md's checkable claims, checked: its module map names every module (and no module that is gone), it
lists every registered algorithm and architecture, and the runtime and the architectures name no algorithm."""

import ast
import glob
import os
import re

import pytest

from distrl import algorithms, architectures

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = re.compile(r"^( *)([\w.]+/|[\w.]+\.py)(?=\s|,|$)")


def _module_map() -> dict[str, str]:
  """{folder ("distrl/runtime/"): the text of its entry in ARCHITECTURE.md's module map, nested entries included}."""
  with open(os.path.join(ROOT, "ARCHITECTURE.md")) as f:
    text = f.read()
  block = text.split("## Module map", 1)[1].split("```", 2)[1]
  sections: dict[str, list[str]] = {}
  stack: list[tuple[int, str]] = []  # (indentation, folder path) of the folders the line is in
  for line in block.splitlines():
    entry = ENTRY.match(line)
    if entry:
      indent, name = len(entry.group(1)), entry.group(2)
      while stack and stack[-1][0] >= indent:
        stack.pop()
      if name.endswith("/"):
        stack.append((indent, (stack[-1][1] if stack else "") + name))
    for _, folder in stack:
      sections.setdefault(folder, []).append(line)
  return {folder: "\n".join(lines) for folder, lines in sections.items()}


def _entries(section: str, indent: int) -> set[str]:
  """The names that begin the lines of a folder's own entries (at `indent` spaces)."""
  return {m.group(2) for line in section.splitlines() if (m := ENTRY.match(line)) and len(m.group(1)) == indent}


def test_the_module_map_names_every_module_and_no_module_that_is_gone():
  sections = _module_map()
  unnamed, gone = [], []
  for folder, pattern in (("distrl/", "distrl/**/*.py"), ("configs/", "configs/*.py")):
    for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
      relative = os.path.relpath(path, ROOT)
      parent, name = os.path.dirname(relative) + "/", os.path.basename(relative)
      if parent not in sections:
        unnamed.append(parent)
      elif name != "__init__.py" and not re.search(rf"(?<![\w/]){re.escape(name)}", sections[parent]):
        unnamed.append(relative)
  for folder, section in sections.items():
    indent = len(ENTRY.match(next(l for l in section.splitlines() if ENTRY.match(l))).group(1)) + 2
    for name in _entries(section, indent):
      if not os.path.exists(os.path.join(ROOT, folder, name)):
        gone.append(folder + name)
  assert not sorted(set(unnamed)), f"ARCHITECTURE.md's module map does not name {sorted(set(unnamed))}"
  assert not gone, f"ARCHITECTURE.md's module map names {gone}, which do not exist"


def _shipped(registry) -> list[str]:
  """The names a registry ships (module paths inside distrl), not those a test registered."""
  return [name for name, found in registry.items() if isinstance(found, str) and found.startswith("distrl.")]


def test_every_registered_algorithm_and_architecture_is_in_the_map():
  sections = _module_map()
  assert {"ppo", "impala", "dqn", "pqn", "sac", "td3"} <= set(_shipped(algorithms._REGISTRY))
  for name in _shipped(algorithms._REGISTRY):
    assert f"distrl/{name}/" in sections, f"algorithm {name!r} has no entry in ARCHITECTURE.md's module map"
  assert {"compiled", "host"} <= set(_shipped(architectures._REGISTRY))
  for name in _shipped(architectures._REGISTRY):
    assert f"distrl/architectures/{name}/" in sections, f"architecture {name!r} has no entry in the module map"


def _package_dirs(*patterns: str) -> list[str]:
  return sorted(path for pattern in patterns for path in glob.glob(os.path.join(ROOT, pattern), recursive=True))


@pytest.mark.parametrize("part", ["distrl/runtime/*.py", "distrl/architectures/**/*.py", "distrl/sharding.py"])
def test_the_runtime_and_the_architectures_name_no_algorithm(part):
  """The host side every run shares and the execution architectures know algorithms only through
  distrl.algorithms' contract, its hooks and its registry: no import of an algorithm package, no algorithm's name."""
  shipped = _shipped(algorithms._REGISTRY)
  for path in _package_dirs(part):
    with open(path) as f:
      source = f.read()
    for node in ast.walk(ast.parse(source)):
      if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        modules = [f"{node.module}.{alias.name}" for alias in node.names]
      else:
        continue
      assert not [m for m in modules if any(m.startswith(f"distrl.{name}") for name in shipped + ["configs."])], \
          (path, modules)
    named = [name for name in shipped + ["a2c"] if re.search(rf"\b{name}\b", source, re.IGNORECASE)]
    assert not named, f"{os.path.relpath(path, ROOT)} names {named}"


def _imported(source: str, package: str) -> set[str]:
  """The modules and names a module in `package` ("distrl.impala", its folder) imports, relative imports made
  absolute: `from distrl.ppo import learner` gives distrl.ppo and distrl.ppo.learner."""
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      parts = package.split(".")
      parts = parts[:len(parts) - node.level + 1] if node.level else []
      base = ".".join(parts + ([node.module] if node.module else []))
      found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
  return found


def test_no_algorithm_package_imports_another():
  """Algorithms share code through distrl/rl/ (networks, iterations, return estimators, losses), never by importing
  one another: no module of a shipped algorithm's package imports another's (IMPALA once took PPO's iteration from
  distrl.ppo.learner)."""
  packages = {algorithms._REGISTRY[name] for name in _shipped(algorithms._REGISTRY)}
  assert {"distrl.ppo", "distrl.impala", "distrl.dqn", "distrl.pqn", "distrl.sac", "distrl.td3"} <= packages
  borrowed = lambda imports, package: sorted(m for m in imports for other in packages - {package}
                                             if m == other or m.startswith(other + "."))
  assert borrowed(_imported("from distrl.ppo import learner as ppo", "distrl.impala"), "distrl.impala")
  assert borrowed(_imported("from ..ppo import losses", "distrl.impala"), "distrl.impala")
  assert borrowed(_imported("from distrl import ppo\nimport distrl.ppo.learner", "distrl.impala"), "distrl.impala")
  assert not borrowed(_imported("from distrl.rl import actor_critic", "distrl.impala"), "distrl.impala")
  found = {}
  for package in sorted(packages):
    paths = _package_dirs(package.replace(".", "/") + "/**/*.py")
    assert paths, f"{package} has no modules in {ROOT}"
    for path in paths:
      here = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, ".")
      with open(path) as f:
        if imports := borrowed(_imported(f.read(), here), package):
          found[os.path.relpath(path, ROOT)] = imports
  assert not found, f"algorithm packages import other algorithms' (share through distrl/rl/ instead): {found}"


def test_the_runtime_names_no_architecture():
  """The runtime asks the architecture `config.architecture` names for everything (programs.build), and branches on
  no architecture's name (nor on `env.host`, as it once did)."""
  words = set(_shipped(architectures._REGISTRY))
  for path in _package_dirs("distrl/runtime/*.py"):
    with open(path) as f:
      tree = ast.parse(f.read())
    compared = {operand.value for node in ast.walk(tree) if isinstance(node, ast.Compare)
                for operand in [node.left, *node.comparators] if isinstance(operand, ast.Constant)}
    imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not compared & words, (path, compared & words)
    assert not [m for m in imports if m and m.startswith("distrl.architectures.")], (path, imports)
    assert "env.host" not in open(path).read() and "env.kind" not in open(path).read(), path


def test_devices_are_laid_out_and_reduced_over_in_sharding_and_the_architectures_only():
  """ARCHITECTURE.md: sharding.py is where arrays meet devices (mesh, shardings, collectives); the host architecture
  also places its rollouts (its process's rows of global arrays). Elsewhere a module may ask which process it is."""
  pattern = re.compile(r"lax\.(pmean|psum|pmax|pmin|all_gather|axis_index)|NamedSharding|PartitionSpec|jax\.pmap\("
                       r"|jax\.shard_map|make_array_from")
  found = [os.path.relpath(path, ROOT) for path in _package_dirs("distrl/**/*.py")
           if pattern.search(open(path).read())]
  assert found and all(path == "distrl/sharding.py" or path.startswith("distrl/architectures/") for path in found), \
      found
