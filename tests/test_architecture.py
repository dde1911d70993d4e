"""The folder tree shows the architecture, and no import runs upstream against the data flow:
text -> AST -> IR -> plan -> stage runs -> shards -> runtime (docs/architecture.md).

Every import counts, at module level or inside a function: a lazy import is still an arrow."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# upstream first; a module may import its own layer and the ones before it
LAYERS = (
    ("contracts", ("mixc", "mixc.ir", "mixc.errors", "mixc.planfile", "mixc.audio", "mixc.hashing", "mixc.wer",
                   "mixc.storage")),
    ("language", ("mixc.lang",)),
    ("planning", ("mixc.plan",)),
    ("backends", ("mixc.backends", "mixc.audio_tokenizer")),
    ("stages", ("mixc.stages",)),
    ("building", ("mixc.build",)),
    ("experiments", ("mixc.experiments",)),
    ("cli", ("mixc.cli", "mixc.__main__")),
)
DEMO = "mixc.demo"  # a side branch: the demo's inputs; only the CLI uses it
WORKERS = "mixc.workers"  # scripts run in a backend's own environment: they import nothing of mixc
RUNTIME_MAY_IMPORT = {"mixc.planfile", "mixc.errors", "mixc.storage"}  # the plan file (local or remote)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every mixc or runtime module a file imports (from-imports name the module, or the package
    when they import submodules from it)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names}
    return {m for m in found if m.split(".")[0] in ("mixc", "runtime")}


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def layer(module: str) -> int | None:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (module.startswith(prefix + ".") and prefix != "mixc"):
                best = index
    return best


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_no_import_runs_upstream():
    arrows = []
    for path in sources("mixc"):
        here = module_name(path)
        for target in imports(path):
            if here.startswith(WORKERS):
                arrows.append(f"{here} -> {target}: a worker runs without mixc installed")
            elif target.startswith(DEMO) and not (here.startswith(DEMO) or here == "mixc.cli"):
                arrows.append(f"{here} -> {target}: only the CLI uses the demo")
            elif here.startswith(DEMO) and not (target.startswith(DEMO) or layer(target) == 0):
                arrows.append(f"{here} -> {target}: the demo uses the shared contracts only")
            elif target.startswith("runtime") and here != "mixc.cli":
                arrows.append(f"{here} -> {target}: the compiler never imports the runtime")
            elif not here.startswith(DEMO) and layer(here) is not None and (layer(target) or 0) > layer(here):
                arrows.append(f"{here} ({LAYERS[layer(here)][0]}) -> {target} ({LAYERS[layer(target)][0]})")
    for path in sources("runtime"):
        for target in imports(path):
            if target.startswith("mixc") and target not in RUNTIME_MAY_IMPORT:
                arrows.append(f"{module_name(path)} -> {target}: the runtime imports only the plan file and errors")
    assert not arrows, "imports that run upstream:\n" + "\n".join(sorted(arrows))


def test_every_module_has_a_layer():
    homeless = [module_name(p) for p in sources("mixc")
                if layer(module_name(p)) is None and not module_name(p).startswith((DEMO, WORKERS))]
    assert not homeless, homeless


def test_the_walk_sees_lazy_imports():
    """The walk is only worth something if it finds imports inside functions."""
    assert "runtime.train" in imports(REPO / "mixc" / "cli.py")
    assert "mixc.stages" in imports(REPO / "mixc" / "stages" / "items.py")


def test_no_two_types_share_a_name():
    names: dict[str, list[str]] = {}
    for path in sources("mixc") + sources("runtime"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names.setdefault(node.name, []).append(module_name(path))
    assert not {n: where for n, where in names.items() if len(where) > 1}
