"""The package's layering, read from the source with ast (nothing is imported, so a module that would fail to import
or that hides an import inside a function is still seen):

* no import cycle among the project's own modules (c360, c360dev, ml, spark_jobs, dags), counting imports inside
  functions, methods and `if TYPE_CHECKING:` blocks - a cycle hidden in a function still ties the modules together;
* `ml/` (model code) imports nothing from `c360` (the runtime pipeline), so models can be trained and served
  without the pipeline's configuration;
* the layers point one way: c360.cli -> c360dev -> c360 runtime (pipeline, ingest, marketing, privacy) ->
  spark_jobs -> config (c360.config, c360.storage), ml on its own; dags -> c360 runtime. No runtime module (c360,
  spark_jobs, ml, dags) imports the dev-only c360dev: only the command line does;
* the c360 package root holds only the bottom layer (config.py, storage.py); everything else lives in a subpackage
  named for what it is (docs/architecture.md has the map).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("c360", "c360dev", "ml", "spark_jobs", "dags")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[module_name(path)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific project module `name` loads (`c360.x.y` where y is a function: `c360.x`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """{imported project module: first line} for every import statement anywhere in the file."""
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: name is a submodule or an attribute of pkg
            targets = [f"{base}.{alias.name}" if base else alias.name for alias in node.names] or [base]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                found.setdefault(resolved, node.lineno)
    return found


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    modules = project_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}, modules


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the groups of modules that reach each other, groups of one left out."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def a_cycle(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """One concrete cycle through the group's first module (shortest, by breadth-first search inside the group)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start} in {group}")


def describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    steps = [f"{a} (line {graph[a][b]} of {modules[a].relative_to(REPO)}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "  " + " -> ".join(cycle) + "\n" + "\n".join(f"      {s}" for s in steps)


def test_the_graph_sees_imports_inside_functions_and_relative_imports(tmp_path):
    # the detector itself: a cycle hidden in a function body and written relatively is still a cycle
    graph = {"p.a": {"p.b": 1}, "p.b": {"p.c": 1}, "p.c": {"p.a": 1}, "p.d": {"p.a": 1}}
    assert strongly_connected(graph) == [["p.a", "p.b", "p.c"]]
    assert a_cycle(["p.a", "p.b", "p.c"], graph) == ["p.a", "p.b", "p.c", "p.a"]
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("import p.a\n")
    modules = {"p": tmp_path / "__init__.py", "p.a": tmp_path / "a.py", "p.b": tmp_path / "b.py"}
    assert imports_of("p.a", modules["p.a"], modules) == {"p.b": 2}
    assert imports_of("p.b", modules["p.b"], modules) == {"p.a": 1}


def test_no_import_cycles_among_the_projects_modules():
    graph, modules = import_graph()
    assert len(modules) > 30 and any(graph.values()), "the scan found no modules or no imports: check PACKAGES"
    groups = strongly_connected(graph)
    assert not groups, (
        f"{len(groups)} import cycle(s) among the project's modules (imports inside functions count). Break each by "
        "moving the shared code to a lower layer (config/storage/ml), passing values in instead of importing back, "
        "or merging the modules:\n"
        + "\n".join(f"- modules {', '.join(g)}; e.g.\n{describe(a_cycle(g, graph), graph, modules)}" for g in groups))


# The layers, lowest first. A module may import its own layer and the layers below it, never one above.
# `config` is the bottom layer: the one place settings come from (c360.config and the landing contract it reads) and
# the storage they point at (c360.storage), so the Spark jobs read the same environment as the pipeline that submits
# them without importing the pipeline itself. `c360` is the runtime (c360.pipeline, c360.ingest, c360.marketing,
# c360.privacy); `c360dev` the dev-only generator and benchmarks; `cli` the command line (c360.cli), the only runtime
# package allowed to reach c360dev; `dags` only declare, on top of the runtime.
CONFIG_MODULES = ("c360", "c360.config", "c360.storage", "c360.ingest", "c360.ingest.contract")
LAYERS = ("ml", "config", "spark_jobs", "c360", "c360dev", "cli", "dags")
RUNTIME = {"ml", "config", "spark_jobs", "c360"}
MAY_IMPORT = {"ml": {"ml"}, "config": {"config"}, "spark_jobs": {"spark_jobs", "ml", "config"},
              "c360": {"c360", "spark_jobs", "ml", "config"},
              "c360dev": {"c360dev", "c360", "spark_jobs", "ml", "config"},
              "cli": {"cli", "c360dev", "c360", "spark_jobs", "ml", "config"},
              "dags": {"dags", "c360", "spark_jobs", "ml", "config"}}
# the c360 package root: the bottom layer only; the rest are subpackages named for what they hold
ROOT_FILES = {"__init__.py", "config.py", "storage.py"}
SUBPACKAGES = {"cli", "ingest", "marketing", "pipeline", "privacy"}


def layer_of(module: str) -> str:
    if module in CONFIG_MODULES:
        return "config"
    if module == "c360.cli" or module.startswith("c360.cli."):
        return "cli"
    return module.split(".")[0]


def test_layers_point_one_way():
    # modules may be acyclic while their packages are not (c360dev.bench -> spark_jobs.score -> c360dev.bench would
    # be hidden by a module-level check that goes through different modules): cli -> c360dev -> c360 -> spark_jobs,
    # dags -> c360, and everything may read c360.config, so spark_jobs can be shipped to a cluster without the
    # pipeline's modules
    graph, modules = import_graph()
    offenders = sorted(
        f"{m} ({layer_of(m)}; line {line} of {modules[m].relative_to(REPO)}) imports {t} ({layer_of(t)})"
        for m, edges in graph.items() for t, line in edges.items() if layer_of(t) not in MAY_IMPORT[layer_of(m)])
    assert not offenders, ("imports against the layering (ml stands alone; each layer may import "
                           + "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in MAY_IMPORT.items()) + "); "
                           "pass the value in as an argument or move the code down a layer:\n" + "\n".join(offenders))


def test_the_config_layer_is_small_and_imports_nothing_above_it():
    graph, modules = import_graph()
    assert all(m in modules for m in CONFIG_MODULES), "a config-layer module was moved: update CONFIG_MODULES"
    for m in CONFIG_MODULES:
        assert set(graph[m]) <= set(CONFIG_MODULES), f"{m} imports {sorted(set(graph[m]) - set(CONFIG_MODULES))}"


def test_ml_imports_nothing_from_c360():
    graph, modules = import_graph()
    offenders = {f"{m} (line {line} of {modules[m].relative_to(REPO)}) imports {target}"
                 for m, edges in graph.items() if m == "ml" or m.startswith("ml.")
                 for target, line in edges.items() if target == "c360" or target.startswith("c360.")}
    assert not offenders, ("ml/ is model code and must not import the c360 pipeline (pass settings in as "
                           "arguments instead):\n" + "\n".join(sorted(offenders)))


def runtime_imports_of_c360dev(graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> list[str]:
    return sorted(f"{m} (line {line} of {modules[m].relative_to(REPO)}) imports {t}"
                  for m, edges in graph.items() if layer_of(m) in RUNTIME | {"dags"}
                  for t, line in edges.items() if t == "c360dev" or t.startswith("c360dev."))


def test_no_runtime_module_imports_the_dev_tools():
    graph, modules = import_graph()
    assert any(m.startswith("c360dev.") for m in modules), "c360dev was not scanned: check PACKAGES"
    assert any(t.startswith("c360dev") for m, e in graph.items() if layer_of(m) == "cli" for t in e), \
        "the command line no longer reaches c360dev: is the check still looking at the right imports?"
    offenders = runtime_imports_of_c360dev(graph, modules)
    assert not offenders, ("c360dev (generator, benchmarks) is for development only; the runtime (c360, spark_jobs, "
                           "ml, dags) must not import it. Move the call to the command line (c360/cli/<command>.py) "
                           "or the code out of c360dev:\n" + "\n".join(offenders))


def test_the_check_catches_a_runtime_import_of_the_dev_tools(tmp_path):
    # the check itself, on a copy of one edge: a pipeline module importing the generator inside a function
    modules = {"c360.pipeline.x": tmp_path / "x.py", "c360dev.generate": tmp_path / "g.py", "c360.cli.y": tmp_path / "y.py"}
    modules["c360.pipeline.x"].write_text("def f():\n    from c360dev.generate import generate\n")
    modules["c360.cli.y"].write_text("from c360dev.generate import generate\n")
    graph = {m: imports_of(m, p, modules) if p.exists() else {} for m, p in modules.items()}
    assert [o.split(" (")[0] for o in runtime_imports_of_c360dev(graph, {m: REPO / p.name for m, p in modules.items()})] \
        == ["c360.pipeline.x"]


def test_the_c360_package_root_holds_only_the_bottom_layer():
    root = REPO / "c360"
    files = {p.name for p in root.glob("*.py")}
    folders = {p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files == ROOT_FILES, (f"c360/ holds {sorted(files - ROOT_FILES)}: only {sorted(ROOT_FILES)} stay at the "
                                 "root; put a module in the subpackage it belongs to (docs/architecture.md, "
                                 "'Where does X live') and update that table")
    assert folders == SUBPACKAGES, f"c360's subpackages changed: {sorted(folders ^ SUBPACKAGES)}; update the map"
    assert all((root / f / "__init__.py").exists() for f in folders), "every c360 subfolder is a package"



def command_line_parsers_outside_the_cli(modules: dict[str, Path]) -> dict[str, int]:
    """Runtime modules of c360 (not c360.cli) that parse a command line (argparse, or sys.argv read directly), with
    the line of the first such use."""
    found = {}
    for m, path in sorted(modules.items()):
        if layer_of(m) not in ("c360", "config"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            argv = (isinstance(node, ast.Attribute) and node.attr == "argv"
                    and isinstance(node.value, ast.Name) and node.value.id == "sys")
            if "argparse" in names or argv:
                found[m] = node.lineno
                break
    return found


def test_command_line_code_lives_in_c360_cli():
    # one place for the command line: c360/cli/<command>.py parses arguments and prints; the runtime modules take
    # values (spark_jobs keep their own `main(argv)`: each is a spark-submit entry point; c360dev its dev tools)
    _, modules = import_graph()
    assert any(layer_of(m) == "cli" for m in modules), "c360.cli was not scanned: check PACKAGES"
    offenders = command_line_parsers_outside_the_cli(modules)
    assert not offenders, ("command-line parsing outside c360/cli; move the parser and the printing to "
                           "c360/cli/<command>.py and pass values in:\n"
                           + "\n".join(f"{m} (line {line} of {modules[m].relative_to(REPO)})"
                                        for m, line in offenders.items()))


def test_the_cli_check_catches_argparse_and_argv_in_a_runtime_module(tmp_path):
    sources = {"c360.marketing.x": "def f():\n    import argparse\n",
               "c360.pipeline.y": "import sys\nname = sys.argv[1]\n",
               "c360.pipeline.ok": "import sys\nsys.exit(0)\n",
               "c360.cli.z": "import argparse\n"}
    modules = {}
    for m, text in sources.items():
        modules[m] = tmp_path / f"{m}.py"
        modules[m].write_text(text)
    assert command_line_parsers_outside_the_cli(modules) == {"c360.marketing.x": 2, "c360.pipeline.y": 2}
