"""The package's shape, checked: its import graph has no cycle and no upward import (layers as in the README's
layout section), the layout section lists what is in the tree, and every public function carries type hints."""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import lightning_mcuprune

ROOT = Path(lightning_mcuprune.__file__).parent
README = ROOT.parent / "README.md"

#: Layers, lowest first: a module may import its own layer and those below it, never one above.
LAYERS = [
    {"units", "io", "errors", "_compat", "console"},
    {"graph"},
    {"boards", "resources"},
    {"quantize"},
    {"pruning", "analysis", "export", "retrain", "plots"},
    {"callback", "deploy", "hil", "cli", "commands", "analysis_cli", "cli_helpers", "examples", "data", "",
     # deprecated module shims at the old paths (one release)
     "zoo", "classifier", "demo", "datasets", "kws_data", "lab"},
]
#: Known upward imports, each inside a function (never at import time), with the reason it stays for now.
ALLOWED_UPWARD = {
    ("analysis", "cli_helpers"): "deprecated alias analysis.load_callable/parse_shape (one release)",
}


def _layer(module: str) -> int:
    head = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"lightning_mcuprune.{module} is in no layer: add it to LAYERS and the README's layout")


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported lightning_mcuprune module relative to the package, at import time?) of one file."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    for n in tree.body:   # imports under a top-level `if`/`try` also run at import time, except TYPE_CHECKING
        if isinstance(n, (ast.If, ast.Try)) and "TYPE_CHECKING" not in ast.unparse(getattr(n, "test", n))[:40]:
            top_level |= {id(c) for c in ast.walk(n)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names]
                                     if node.module == "lightning_mcuprune" else [])
        else:
            continue
        for name in names:
            if name.startswith("lightning_mcuprune.") :
                found.append((name[len("lightning_mcuprune."):], id(node) in top_level))
    return found


def _graph(import_time_only: bool) -> dict[str, set[str]]:
    mods = _modules()
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for target, at_import in _imports(p):
            while target and target not in mods:   # "pkg.mod.name" -> the module "pkg.mod"
                target = target.rpartition(".")[0]
            if target and target != m and (at_import or not import_time_only):
                g[m].add(target)
    return g


def test_no_upward_imports():
    bad = []
    for m, targets in _graph(import_time_only=False).items():
        for t in targets:
            if _layer(t) > _layer(m) and (m, t.split(".")[0]) not in ALLOWED_UPWARD:
                bad.append(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    g = {m: {t for t in ts if not (m == "" or t == "")} for m, ts in _graph(import_time_only=True).items()}
    # a package's __init__ importing its own submodules is not a cycle; everything else is
    g = {m: {t for t in ts if not t.startswith(m + ".") or m == ""} for m, ts in g.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_readme_layout_matches_the_tree():
    text = README.read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    listed = set()
    for line in block.splitlines():   # the first column of each line: the names it describes
        first = re.split(r"\s{2,}", line.strip())[0]
        if first and not first.startswith(("#", "(")):
            listed |= {t for t in re.split(r"[,\s]+", first) if t.endswith((".py", "/"))}
    listed.discard("lightning_mcuprune/")
    listed |= set(re.findall(r"\b([a-z_]+\.py)\b", block)) & {p.name for p in ROOT.rglob("*.py")}
    tree = {p.name + ("/" if p.is_dir() else "") for p in ROOT.iterdir()
            if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").is_file())}
    shims = {f"{m}.py" for m in ("zoo", "classifier", "demo", "datasets", "kws_data", "lab")}
    assert tree - shims - listed == set(), f"in the tree, not in the README's layout: {sorted(tree - shims - listed)}"
    anywhere = {p.name for p in ROOT.rglob("*.py")} | {p.name + "/" for p in ROOT.rglob("*") if p.is_dir()}
    stale = listed - anywhere - {"hil/", "tests/", "benchmarks/", "examples/", "docs/", "integration/"}
    assert not stale, f"in the README's layout, not in the package: {sorted(stale)}"


def _public_functions():
    skip = {"lightning_mcuprune." + m for m in ("zoo", "classifier", "demo", "datasets", "kws_data", "lab")}
    skip.add("lightning_mcuprune.hil.layer")
    for info in pkgutil.walk_packages(lightning_mcuprune.__path__, "lightning_mcuprune."):
        if info.name in skip:
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for mname, meth in vars(obj).items():
                    if inspect.isfunction(meth) and not mname.startswith("_"):
                        yield f"{mod.__name__}.{name}.{mname}", meth


def test_public_functions_have_type_hints():
    missing = []
    for where, fn in _public_functions():
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if sig.return_annotation is inspect.Signature.empty or any(p.annotation is p.empty for p in params):
            missing.append(where)
    assert not missing, f"{len(missing)} public functions without full type hints:\n" + "\n".join(sorted(missing))


def test_every_library_error_is_an_mcuprune_error():
    from lightning_mcuprune import MCUPruneError
    errors = []
    for info in pkgutil.walk_packages(lightning_mcuprune.__path__, "lightning_mcuprune."):
        if info.name.rsplit(".", 1)[-1] in ("zoo", "classifier", "demo", "datasets", "kws_data", "lab", "layer"):
            continue
        mod = importlib.import_module(info.name)
        errors += [o for n, o in vars(mod).items() if inspect.isclass(o) and issubclass(o, BaseException)
                   and o.__module__ == mod.__name__ and not n.startswith("_")]
    assert errors and all(issubclass(e, MCUPruneError) for e in errors), [e for e in errors if not issubclass(e, MCUPruneError)]
    assert all(e.__name__.endswith("Error") for e in errors), [e.__name__ for e in errors]


@pytest.mark.parametrize("old,new", [("zoo", "examples.zoo"), ("lab", "hil.benchmark"), ("kws_data", "data.kws")])
def test_moved_modules_still_import_with_a_deprecation_warning(old, new):
    import sys
    sys.modules.pop(f"lightning_mcuprune.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"lightning_mcuprune.{new}"):
        mod = importlib.import_module(f"lightning_mcuprune.{old}")
    assert mod is importlib.import_module(f"lightning_mcuprune.{new}")


@pytest.mark.parametrize("module", ["lightning_mcuprune.cli_helpers", "lightning_mcuprune.graph.ops",
                                    "lightning_mcuprune.boards.profile"])
def test_docstring_examples_run(module):
    import doctest
    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_old_keyword_spellings_still_work_with_a_deprecation_warning():
    from lightning_mcuprune.hil.benchmark import _link_and_profile

    class Link:
        def hello(self):
            return {}

    link = Link()
    with pytest.warns(DeprecationWarning, match="link="):
        assert _link_and_profile(None, link, None) == (link, None)          # benchmark(board=<open Board>)
    with pytest.warns(DeprecationWarning, match="board="):
        assert _link_and_profile(None, None, "mps2-an386") == (None, "mps2-an386")   # benchmark(profile=...)
    assert _link_and_profile(link, "mps2-an386", None) == (link, "mps2-an386")
    from lightning_mcuprune.hil.calibrate import calibrate
    with pytest.warns(DeprecationWarning, match="use link="), pytest.raises(TypeError, match="both board= and link="):
        calibrate(link, "out.json", board=link)
