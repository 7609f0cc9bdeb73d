"""The structure docs/architecture.md promises: one owner per contract, imports one way."""
import ast
from pathlib import Path

import pytest

from embbert.core import layout

REPO = Path(__file__).resolve().parent.parent
#: Installed package -> folder.
PACKAGES = {"embbert": REPO / "embbert", "embbert.datasets": REPO / "datasets",
            "embbert.keras_model": REPO / "keras_model", "embbert.tflite": REPO / "tflite"}
#: Which layer may import which (the top, `embbert.cli`/`run`/`bench`, may import everything).
ALLOWED = {
    "embbert.core": {"embbert.core"},
    "embbert.datasets": {"embbert.core", "embbert.datasets"},
    "embbert.keras_model": {"embbert.core", "embbert.datasets", "embbert.keras_model"},
    "embbert.tflite": {"embbert.core", "embbert.datasets", "embbert.keras_model", "embbert.tflite",
                       "embbert.micro_app"},  # the data package of C sources (its ROOT): it imports nothing
}


def _modules():
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            if package == "embbert" and path.relative_to(folder).parts[0] not in ("core", "bench", "api") \
                    and path.name not in ("__init__.py", "cli.py", "run.py"):
                continue
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([package, *parts]), path


def _layer(module: str) -> str:
    for layer in ("embbert.core", "embbert.datasets", "embbert.keras_model", "embbert.tflite", "embbert.micro_app"):
        if module == layer or module.startswith(layer + "."):
            return layer
    return "embbert (top)"


def _imports(module: str, path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from embbert import run` imports the module embbert.run
                yield f"{target}.{alias.name}", node.lineno


def test_modules_are_found():
    names = {m for m, _ in _modules()}
    assert {"embbert.core.layout", "embbert.cli", "embbert.bench", "embbert.datasets.tasks",
            "embbert.keras_model.model", "embbert.tflite.convert", "embbert.api.classifier"} <= names


@pytest.mark.parametrize("module,path", [(m, p) for m, p in _modules() if _layer(m) in ALLOWED],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_imports_go_one_way(module, path):
    """Every module below the top (which may import everything) imports only its own and lower layers."""
    layer = _layer(module)
    bad = []
    for target, line in _imports(module, path):
        if not target.startswith("embbert"):
            continue
        t_layer = _layer(target)
        if t_layer == "embbert (top)" and target in ("embbert",):
            continue  # the package itself (its __init__ only sets the environment)
        if t_layer not in ALLOWED[layer]:
            bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_by_string():
    for module, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                pytest.fail(f"{path.relative_to(REPO)}:{node.lineno}: importlib.import_module (import it plainly)")


#: The file names of a run (folder names such as "tokenizer" or "micro_app", and README.md, are also
#: ordinary words of the code: not checked).
RUN_FILE_NAMES = {v for k, v in vars(layout).items()
                  if k.isupper() and isinstance(v, str) and "." in v and v != layout.MODEL_CARD}


def test_run_file_names_are_spelled_only_in_layout():
    """Every run-file name is a constant of embbert/core/layout.py; no other module spells one."""
    assert {"config.json", "qat.weights.h5", "model_int8.tflite", "arena_report.json"} <= RUN_FILE_NAMES
    found = []
    for module, path in _modules():
        if module == "embbert.core.layout":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_FILE_NAMES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "use embbert.core.layout:\n" + "\n".join(found)


def test_special_tokens_are_spelled_only_in_the_tokenizer_package():
    """The special tokens and their ids are the tokenizer package's (datasets/tokenizer/spec.py)."""
    from embbert.datasets.tokenizer import SPECIAL_TOKENS

    found = []
    for module, path in _modules():
        if module.startswith("embbert.datasets.tokenizer"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in SPECIAL_TOKENS:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "use embbert.datasets.tokenizer:\n" + "\n".join(found)


def test_no_private_members_of_keras_nlp():
    """keras-nlp is used through its public API only (MLM masking)."""
    for module, path in _modules():
        text = path.read_text(encoding="utf-8")
        if "keras_nlp" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and not own:
                pytest.fail(f"{path.relative_to(REPO)}:{node.lineno}: private member {node.attr} in a module using keras_nlp")


#: Import cycles known and tolerated (none; the test also fails when a listed cycle is gone).
KNOWN_CYCLES: list[frozenset] = []


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports, deferred imports (inside functions) included. An import
    of an ancestor package (`import embbert` in a submodule) is no edge: Python imports it first."""
    modules = dict(_modules())
    modules["embbert.micro_app"] = REPO / "micro_app" / "__init__.py"

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {}
    for module, path in modules.items():
        graph[module] = {m for t, _ in _imports(module, path)
                         if (m := resolve(t)) and m != module and not module.startswith(m + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    """Deferred imports count: a cycle hidden inside a function is still a cycle."""
    graph = import_graph()
    assert {"embbert.tflite.arena", "embbert.tflite.convert", "embbert.keras_model.model"} <= set(graph)
    assert "embbert.tflite.probe" in graph["embbert.tflite.convert"]  # deferred and top-level imports both seen
    found = cycles(graph)
    unexpected = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not unexpected, "import cycles:\n" + "\n".join(" -> ".join(c) for c in unexpected)
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"no longer a cycle, remove it from KNOWN_CYCLES: {gone}"
