"""Which source files a stage module runs: its `repro.*` imports, followed transitively.

The workflow declares these files as inputs of the stage's rule, so editing a source file re-runs
exactly the jobs whose code imports it. Parsed with `ast`, so the Snakefile never imports torch.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]


def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@lru_cache(maxsize=None)
def _direct_imports(path: Path) -> tuple[str, ...]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return tuple(sorted(m for m in found if m == "repro" or m.startswith("repro.")))


def module_sources(module: str) -> list[str]:
    """Sorted paths (relative to the repo root) of `module` and every repro module it imports."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        todo.extend(_direct_imports(path))
    if module not in seen:
        raise ValueError(f"no source file for module {module!r} under {SRC}")
    root = SRC.parent
    return sorted({str(p.relative_to(root)) for p in seen.values()})
