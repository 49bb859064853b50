"""The package's layers: imports run one way (entry points -> run -> lit -> config -> nn / data -> base), with no
circle between modules, the fused launcher plugin imports the fused subpackage and nothing above it, and the
finishing sweeper plugin only the bottom layer."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# lowest first: a module may import from its own layer and the ones before it, never from a later one
LAYERS = [
    [
        "experiments.errors",
        "experiments.names",
        "experiments.read_back",
        "experiments.run_dir",
        "experiments.sweep_dir",
    ],
    ["experiments.nn", "experiments.data"],
    ["experiments.config"],
    ["experiments.lit"],
    ["experiments.run", "experiments.reports"],
    ["experiments.fused"],
    ["experiments.__main__", "hydra_plugins"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def project_imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "experiments":
            for alias in node.names:  # ``from experiments.lit import diagnostics`` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (SRC / (candidate.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "experiments"}
    return found


MODULES = {module_name(p): p for root in ("experiments", "hydra_plugins") for p in (SRC / root).rglob("*.py")}
GRAPH = {name: project_imports(path) for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_from_its_own_layer_or_below(module):
    upward = [m for m in GRAPH[module] if layer(m) > layer(module)]
    assert not upward, f"{module} imports {upward} from a layer above its own"


def test_no_module_imports_itself_back_through_others():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for imported in sorted(GRAPH.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


def test_the_hydra_plugins_import_only_what_they_drive():
    fused = [m for m in GRAPH if m.startswith("hydra_plugins.fused_launcher")]
    assert fused and all(imported.startswith("experiments.fused") for m in fused for imported in GRAPH[m])
    assert any(GRAPH[m] for m in fused)
    # the finishing sweeper reads a sweep directory's files, before any job imports torch
    finish = [m for m in GRAPH if m.startswith("hydra_plugins.finish_sweeper")]
    assert finish and all(layer(imported) == 0 for m in finish for imported in GRAPH[m])
    assert any(GRAPH[m] for m in finish)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_reads_in_one_sitting(module):
    """About 250 lines at most (280 allowed); the one rules table every config value passes may be longer."""
    lines = len(MODULES[module].read_text().splitlines())
    assert module == "experiments.config.rules" or lines <= 280, f"{module}: {lines} lines"
