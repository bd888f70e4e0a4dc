"""The runtime's imports flow one way: a package imports only packages of a lower layer (or itself).

Layers, lowest first (README, "Layout"):
  0  base modules at the package root: errors, command, console, dist, korean, builtin
  1  config      pydantic models of the stage config
  2  data        sources, row schemas, rejected rows, parquet shards
  2  observe     Prometheus metrics, the runner's event feed, experiment tracking
  3  pipeline    manifests, stage folders, checkpoints, releases, the stage lifecycle
  4  train       model loading, TRL arguments, the stage trainer, callbacks, the training loop
  5  stages      one module or package per stage; a stage never imports another stage
  6  local, bench   the local runner and report; measurements of the stage code path
  7  cli           the command line, which only collects the commands of the modules above
  8  __main__      `python -m korean_llm`

Every import counts, also those inside functions and under `TYPE_CHECKING`: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runtime" / "korean_llm"
BASE = {"errors", "command", "console", "dist", "korean", "builtin"}
LAYERS = {
    "config": 1,
    "data": 2,
    "observe": 2,
    "pipeline": 3,
    "train": 4,
    "stages": 5,
    "local": 6,
    "bench": 6,
    "cli": 7,
    "__main__": 8,
    **dict.fromkeys(BASE, 0),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(module: str, source: str) -> list[tuple[int, str]]:
    """(line, module) of every korean_llm module that `source` imports; `from korean_llm import x` is `korean_llm.x`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("korean_llm")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the importing module's package
                base = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "korean_llm":
                found += [(node.lineno, f"korean_llm.{a.name}") for a in node.names]
            elif target.startswith("korean_llm."):
                found.append((node.lineno, target))
    return found


def unit(module: str) -> tuple[int, str]:
    """(layer, unit) of a module: the unit is its top-level package, or `stages.<stage>` inside stages/."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top == "__init__":
        return 0, "korean_llm"
    if top not in LAYERS:
        raise AssertionError(f"{module}: no layer for '{top}' in tests/test_layers.py; add it where it belongs")
    if top == "stages" and len(parts) > 2:
        return LAYERS[top], f"stages.{parts[2]}"
    return LAYERS[top], "base" if top in BASE else top


def violations(module: str, source: str) -> list[str]:
    layer, own = unit(module)
    out = []
    for line, target in imported_modules(module, source):
        if target == "korean_llm":
            continue
        their_layer, theirs = unit(target)
        if theirs == own or (own == "stages" and theirs.startswith("stages.")):
            continue  # inside one unit; stages/__init__ (the stage commands) loads the stage modules by name
        if their_layer >= layer:
            out.append(f"{module}:{line} imports {target} (layer {their_layer} {theirs}, not below {layer} {own})")
    return out


def test_every_runtime_import_points_to_a_lower_layer() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40, f"expected the runtime's modules under {PACKAGE}"
    problems = [v for f in files for v in violations(module_name(f), f.read_text(encoding="utf-8"))]
    assert not problems, "upward or sideways imports:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # a lower layer reaching up: config must not know the training code
        ("korean_llm.config.run", "from korean_llm.train import models", "imports korean_llm.train "),
        # lazy and type-only imports count as well
        ("korean_llm.data.rows", "def f():\n    from korean_llm.pipeline.stage import StageContext\n", "layer 3"),
        (
            "korean_llm.observe.tracking",
            "if TYPE_CHECKING:\n    from korean_llm.pipeline import artifacts\n",
            "layer 3",
        ),
        # two packages of one layer do not import each other
        ("korean_llm.data.sources", "from korean_llm.observe.events import emit_event", "layer 2 observe"),
        # one stage does not import another
        ("korean_llm.stages.deploy", "from korean_llm.stages.evaluate import scoring", "stages.evaluate"),
        # base modules import nothing above them
        ("korean_llm.builtin", "from korean_llm import config", "korean_llm.config"),
    ],
)
def test_the_check_finds_an_upward_import(module: str, source: str, expected: str) -> None:
    found = violations(module, source)
    assert len(found) == 1 and expected in found[0], found


def test_imports_inside_a_unit_and_downward_are_allowed() -> None:
    source = (
        "from korean_llm import dist\n"
        "from korean_llm.config import StageConfig\n"
        "from korean_llm.stages.evaluate.scoring import perplexity\n"
        "from korean_llm.train.models import init_point\n"
    )
    assert violations("korean_llm.stages.evaluate.inputs", source) == []
