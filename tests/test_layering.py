"""The layering contract (the project's ../shared/DESIGN.md), checked by parsing imports: nothing imports upward, so there is no cycle.

    clifvqa_core (the method; inference: the Scorer, prediction files) <- cache (stores; maps from stores checked
        for a model; `predict`) <- extract <- train (data, loop, protocol) <- apps (train.demo, train.reproduce,
        train.experiments) <- bench, cli.py

Imports inside functions count too (a lazy import upward is still an upward dependency).
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

#: layer of each module prefix (the longest matching prefix wins); a module may import its own layer or lower
LAYERS = {
    "clifvqa_core": 0,
    "cache": 1,
    "extract": 2,
    "train": 3,
    "train.demo": 4,
    "train.experiments": 4,
    "train.reproduce": 4,
    "bench": 5,
    "cli": 6,
}


def _layer(module: str) -> int | None:
    best = None
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rank)
    return None if best is None else best[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
    return out


def _sources() -> list[Path]:
    files = [REPO / "cli.py"]
    for top in ("clifvqa_core", "cache", "extract", "train", "bench"):
        files += sorted((REPO / top).rglob("*.py"))
    return files


def test_nothing_imports_upward():
    problems = []
    for path in _sources():
        module = _module_name(path)
        own = _layer(module)
        assert own is not None, module
        for line, target in _imports(path, module):
            layer = _layer(target)
            if layer is not None and layer > own:
                problems.append(f"{path.relative_to(REPO)}:{line}: {module} (layer {own}) imports {target} "
                                f"(layer {layer})")
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The parser resolves relative imports, so a violation written either way is caught."""
    src = tmp_path / "x.py"
    src.write_text("from ..train import loop\nimport cache.store\n")
    found = [t for _, t in _imports(src, "clifvqa_core.x")]
    assert found == ["train", "cache.store"]
    assert all(_layer(t) > _layer("clifvqa_core.x") for t in found)
