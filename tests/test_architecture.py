"""Import rules of the architecture, checked statically on the source (AST), with every violation as ``file:line``.

Rules:
1. ``nvresearch.core`` imports no paper (``nvresearch.<slug>``) and no entry point (``nvresearch.train``, ``eval``,
   ``_hydra``), at any level of the code: core is what papers share, so it cannot depend on one.
2. A paper imports no other paper (a shared piece moves to core). The task sub-packages of one paper
   (``nvresearch.pac.upsampling`` and ``nvresearch.pac.segmentation``) are one paper and may import each other.
3. Torch-only modules do not *reach* the training stack (Lightning, torchmetrics, Hydra, OmegaConf) nor an optional
   heavy library (kornia, OpenCV, scipy, h5py, scikit-learn).

Reachability is the transitive closure of the imports that run when a module is imported: module-level statements
(class bodies included; ``if TYPE_CHECKING:`` blocks excluded), plus the parent packages of every imported module,
whose ``__init__`` runs first. An import inside a function runs only when the function is called: it is the
sanctioned lazy pattern for an optional heavy library (``import cv2`` inside the reader that needs it). For the
training stack the lazy pattern is not free: inside a torch-only module it is allowed only where ``LAZY_TRAINING_STACK``
lists it with its reason. Imports built at run time (``importlib.import_module``) are not seen.

The torch-only set: the package root of every paper and of every task sub-package (``nvresearch.pac.upsampling``),
each paper's ``models``, ``losses``, ``data`` and ``metrics``, every module under ``nvresearch.core`` except
``nvresearch.core.training`` (the one Lightning part of core; a new core package is torch-only by default), the package
root ``nvresearch`` — and every module these reach.

``tests/test_imports.py`` checks the same property at run time, in a fresh process; this test names the line.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

import nvresearch

SOURCE = Path(__file__).resolve().parent.parent / "nvresearch"
ENTRY_POINTS = frozenset({"train", "eval", "_hydra"})
TRAINING_STACK = frozenset(
    {"pytorch_lightning", "lightning", "lightning_fabric", "lightning_utilities", "torchmetrics", "hydra", "omegaconf"}
)
OPTIONAL_HEAVY = frozenset({"kornia", "cv2", "scipy", "h5py", "sklearn"})
PAPER_TORCH_ONLY = ("models", "losses", "data", "metrics")
LAZY_TRAINING_STACK = {
    # module -> external top-level names it may import inside a function, and why
    "nvresearch.core.utils.instantiate": ({"omegaconf"}, "converts a DictConfig the caller already holds"),
    "nvresearch.core.utils.schema": ({"omegaconf"}, "reads a DictConfig the caller already holds, unresolved"),
}


@dataclass(frozen=True)
class Import:
    """One imported name: ``target`` is the absolute module name, ``runtime`` whether importing the file runs it,
    ``typing_only`` whether it sits under ``if TYPE_CHECKING:`` (never runs)."""

    target: str
    line: int
    runtime: bool
    typing_only: bool = False


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # relative to the directory above the package, as printed in a violation
    is_package: bool
    imports: tuple[Import, ...]


def _module_name(path: Path, root: Path, package: str) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join([package, *parts]), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _collect(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement, whether it runs at import time (not in a function, not under TYPE_CHECKING), and
    whether it is for type checkers only."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool, bool]] = []

    def visit(nodes: list[ast.AST], runtime: bool, typing_only: bool) -> None:
        for child in nodes:
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, runtime, typing_only))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(list(ast.iter_child_nodes(child)), False, typing_only)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                visit(child.body, False, True)
                visit(child.orelse, runtime, typing_only)
            else:
                visit(list(ast.iter_child_nodes(child)), runtime, typing_only)

    visit(list(tree.body), True, False)
    return found


def _resolve(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    """Absolute names of the modules a statement imports (``from a import b`` names ``a.b`` when it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        if not base:
            raise ValueError(f"{module}: relative import beyond the top-level package (level {node.level})")
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    names = [prefix] if node.module or not node.level else []
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        if sub in known:
            names.append(sub)
        elif not names:
            names.append(prefix)
    return names


def scan(root: Path, package: str) -> dict[str, Module]:
    """Parse every module under ``root`` (the directory of ``package``)."""
    paths = sorted(root.rglob("*.py"))
    names = {p: _module_name(p, root, package) for p in paths}
    known = {n for n, _ in names.values()}
    modules: dict[str, Module] = {}
    for path in paths:
        name, is_package = names[path]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = tuple(
            Import(target, node.lineno, runtime, typing_only)
            for node, runtime, typing_only in _collect(tree)
            for target in _resolve(node, name, is_package, known)
        )
        modules[name] = Module(name, path.relative_to(root.parent).as_posix(), is_package, imports)
    return modules


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _internal(target: str, modules: dict[str, Module]) -> str | None:
    """The module of ours that ``target`` names (``a.b.C`` -> ``a.b`` when ``C`` is a name, not a module)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def _edges(module: Module, modules: dict[str, Module]) -> list[tuple[str, Import]]:
    """Modules of ours that importing ``module`` runs, with the statement responsible (parents included)."""
    out = []
    for imp in module.imports:
        own = _internal(imp.target, modules) if imp.target.split(".")[0] == module.name.split(".")[0] else None
        if imp.runtime and own:
            out += [(m, imp) for m in [*_parents(own), own] if m in modules]
    return out


@dataclass(frozen=True)
class Layout:
    package: str
    papers: frozenset[str]

    def paper_of(self, name: str) -> str | None:
        parts = name.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in self.papers else None

    def is_core(self, name: str) -> bool:
        return name == f"{self.package}.core" or name.startswith(f"{self.package}.core.")

    def is_entry_point(self, name: str) -> bool:
        parts = name.split(".")
        return len(parts) > 1 and parts[1] in ENTRY_POINTS


def torch_only_seeds(modules: dict[str, Module], layout: Layout) -> set[str]:
    pkg = layout.package
    seeds = {pkg}
    for name, module in modules.items():
        paper = layout.paper_of(name)
        if paper and module.is_package:
            seeds.add(name)  # the paper's root and its task sub-packages' roots
        if paper and name.rpartition(".")[2] in PAPER_TORCH_ONLY:
            seeds.add(name)
        if layout.is_core(name) and not (name == f"{pkg}.core.training" or name.startswith(f"{pkg}.core.training.")):
            seeds.add(name)
    return seeds


def reachable(seeds: set[str], modules: dict[str, Module]) -> dict[str, list[str]]:
    """Every module reached from the seeds through run-time imports, with a shortest import chain (seed first)."""
    chain = {s: [s] for s in sorted(seeds) if s in modules}
    todo = deque(chain)
    while todo:
        name = todo.popleft()
        for target, _ in _edges(modules[name], modules):
            if target not in chain:
                chain[target] = [*chain[name], target]
                todo.append(target)
    return chain


def _where(module: Module, imp: Import) -> str:
    return f"{module.path}:{imp.line}"


def violations(modules: dict[str, Module], layout: Layout) -> list[str]:
    """Every broken rule, one line each: ``path:line: rule: what``."""
    out: list[str] = []
    found: dict[tuple[str, int, int], str] = {}
    for name in sorted(modules):
        module = modules[name]
        for imp in module.imports:
            own = _internal(imp.target, modules) if imp.target.split(".")[0] == layout.package else None
            if own is None:
                continue
            target_paper = layout.paper_of(own)
            if layout.is_core(name) and (target_paper or layout.is_entry_point(own)):
                found[name, imp.line, 1] = f"core imports a paper or an entry point: {name} -> {imp.target}"
            paper = layout.paper_of(name)
            if paper and target_paper and target_paper != paper:
                found[name, imp.line, 2] = f"a paper imports another paper: {name} -> {imp.target}"
    # one line per statement (``from pkg.alpha import models`` names two modules): the most specific target wins
    out += [f"{modules[name].path}:{line}: {text}" for (name, line, _), text in found.items()]
    for name, chain in sorted(reachable(torch_only_seeds(modules, layout), modules).items()):
        module = modules[name]
        allowed_lazy = LAZY_TRAINING_STACK.get(name, (set(), ""))[0]
        for imp in module.imports:
            top = imp.target.split(".")[0]
            if imp.typing_only:
                continue
            via = " -> ".join(chain)
            if top in TRAINING_STACK and (imp.runtime or top not in allowed_lazy):
                kind = "at module level" if imp.runtime else "inside a function (not in LAZY_TRAINING_STACK)"
                out.append(f"{_where(module, imp)}: torch-only module imports {imp.target} {kind} (reached by {via})")
            elif top in OPTIONAL_HEAVY and imp.runtime:
                out.append(
                    f"{_where(module, imp)}: torch-only module imports optional {imp.target} at module level "
                    f"(import it inside the function that needs it; reached by {via})"
                )
    return out


def _layout_of(modules: dict[str, Module], package: str) -> Layout:
    papers = {n.split(".")[1] for n, m in modules.items() if m.is_package and n.count(".") == 1}
    return Layout(package, frozenset(papers - {"core"}))


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, Module], Layout]:
    modules = scan(SOURCE, "nvresearch")
    return modules, _layout_of(modules, "nvresearch")


def test_import_rules(project: tuple[dict[str, Module], Layout]) -> None:
    modules, layout = project
    found = violations(modules, layout)
    assert not found, f"{len(found)} import-rule violation(s):\n" + "\n".join(found)


def test_every_paper_package_is_registered(project: tuple[dict[str, Module], Layout]) -> None:
    """A paper folder missing from ``nvresearch.PAPERS`` would escape the rules that key on the slug list."""
    _, layout = project
    assert layout.papers == set(nvresearch.PAPERS), (
        f"paper packages {sorted(layout.papers)} != nvresearch.PAPERS {sorted(nvresearch.PAPERS)}"
    )


def test_torch_only_set_covers_the_issue_minimum(project: tuple[dict[str, Module], Layout]) -> None:
    modules, layout = project
    reached = reachable(torch_only_seeds(modules, layout), modules)
    minimum = [f"nvresearch.{p}" for p in nvresearch.PAPERS] + [
        f"nvresearch.core.{p}" for p in ("layers", "pruning", "meta", "geometry", "gan", "data", "utils")
    ]
    assert not [m for m in minimum if m not in reached]
    assert "nvresearch.core.training" not in reached, "a torch-only module reaches core.training (Lightning)"


# ------------------------------------------------------------------------------------- the checker on a known tree
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    """The walker resolves absolute, relative and function-level imports, and follows chains through packages."""
    _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "train.py": "import hydra\n",
            "core/__init__.py": "",
            "core/gan/__init__.py": "from .blocks import Block\n",
            "core/gan/blocks.py": "import torch\nfrom ..helpers import h\nclass Block:\n    pass\n",
            "core/helpers.py": "def h():\n    from pkg.alpha import models\n",  # rule 1, lazily
            "core/stack.py": "from pkg.train import main\n",  # rule 1: entry point
            "core/training/__init__.py": "import pytorch_lightning\n",  # allowed: not torch-only
            "core/utils.py": "def f():\n    import cv2\n    import hydra\n",  # cv2 fine lazily, hydra not
            "alpha/__init__.py": "from .models import Net\n",
            "alpha/models.py": "from . import losses\nclass Net:\n    pass\n",
            "alpha/losses.py": "from pkg.beta.models import Other\nfrom pkg.alpha.chain import x\n",  # rule 2
            "alpha/chain.py": "import omegaconf\nimport scipy\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import lightning\n",
            "alpha/module.py": "import pytorch_lightning\n",  # allowed: not reached from the root
            "alpha/task/__init__.py": "from ..module import X\n",  # task root reaches Lightning
            "beta/__init__.py": "",
            "beta/models.py": "class Other:\n    pass\n",
        },
    )
    modules = scan(tmp_path / "pkg", "pkg")
    layout = _layout_of(modules, "pkg")
    assert layout.papers == {"alpha", "beta"}
    assert [i.target for i in modules["pkg.alpha.models"].imports] == ["pkg.alpha.losses"]
    found = "\n".join(violations(modules, layout))
    assert "core/helpers.py:2: core imports a paper" in found
    assert "core/stack.py:1: core imports a paper or an entry point: pkg.core.stack -> pkg.train" in found
    assert "alpha/losses.py:1: a paper imports another paper: pkg.alpha.losses -> pkg.beta.models" in found
    assert "alpha/chain.py:1: torch-only module imports omegaconf at module level" in found
    assert "(reached by pkg.alpha.losses -> pkg.alpha.chain)" in found  # losses is torch-only by name
    assert "alpha/chain.py:2: torch-only module imports optional scipy" in found
    assert "alpha/module.py:1: torch-only module imports pytorch_lightning" in found  # via alpha/task
    assert "core/utils.py:3: torch-only module imports hydra inside a function" in found
    assert "core/utils.py:2" not in found  # cv2 inside a function: the sanctioned lazy import
    assert "lightning " not in found.replace("pytorch_lightning", "")  # TYPE_CHECKING import does not run
    assert "pkg/train.py:1: torch-only module imports hydra" in found  # core reached the entry point
    assert "core/training" not in found
    assert len(violations(modules, layout)) == 8, found
