"""Command line: one command per stage, plus the local pipeline runner.

    korean-llm run -f values/local.yaml            # render the chart, run the DAG locally
    korean-llm render -f values/local.yaml         # print what `helm template` renders
    korean-llm <stage> --config FILE [--set k=v]   # preprocess | cpt | sft | rlhf | evaluate | deploy
    korean-llm stage --config FILE                 # the stage named by $STAGE (the seed's entrypoint)
    korean-llm bench --model qwen2.5-7b --compare unsloth,hf   # training throughput (see bench.py)
    korean-llm data inspect NAME|PATH [-f values.yaml]         # a data set as the stages would read it

Exit codes: 0 ok, 1 unexpected error, 2 bad config or data, 3 failed gate, 129 retryable, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from korean_llm import dist
from korean_llm.config import STAGES, load_config
from korean_llm.errors import EXIT_BUG, ConfigError, KoreanLLMError

log = logging.getLogger("korean_llm")


def setup_logging(verbose: bool = False) -> None:
    """Rich output on a terminal; plain one-line records otherwise (pod logs, files, the local runner)."""
    level = logging.DEBUG if verbose else logging.INFO
    if not dist.is_main():
        level = logging.WARNING  # one process speaks for the job; the others only warn
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
        )
    for noisy in ("httpx", "urllib3", "datasets", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def run_stage(stage: str, config_path: str, overrides: Sequence[str]) -> int:
    cfg = load_config(config_path, overrides)
    if cfg.stage != stage:
        raise ConfigError(f"{config_path}: key 'stage' is '{cfg.stage}' but the command runs '{stage}'")
    try:
        module = importlib.import_module(f"korean_llm.stages.{stage}")
    except ModuleNotFoundError as exc:
        if exc.name == f"korean_llm.stages.{stage}":
            raise ConfigError(f"stage '{stage}' is not available in this version of korean-llm") from None
        raise
    module.main(cfg)
    return 0


def add_overrides(p: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE` (repeatable): stage config overrides, collected in `args.overrides`."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a stage config key, e.g. --set {example} (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="korean-llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in (*STAGES, "stage"):
        p = sub.add_parser(stage, help=f"run the {stage} stage" if stage != "stage" else "run the stage in $STAGE")
        p.add_argument("--config", "-c", required=True, help="stage config YAML (the chart's ConfigMap entry)")
        add_overrides(p, "training.max_steps=10")
    for name, helptext in (
        ("run", "render the chart and run the pipeline DAG locally"),
        ("render", "render the chart with helm and list the DAG"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
        p.add_argument(
            "--set",
            dest="helm_set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="helm --set override (repeatable)",
        )
        p.add_argument("--chart", default=None, help="chart folder (default: the repository's charts/)")
        p.add_argument("--runs-dir", default="runs", help="where runs/<run-id>/ is created")
        p.add_argument("--run-id", default=None, help="run id (default: the values' runId)")
        if name == "run":
            p.add_argument("--only", action="append", default=[], help="run only these steps (repeatable)")
            p.add_argument("--manifests", default=None, help="run manifests rendered elsewhere (no helm needed)")
        else:
            p.add_argument("-o", "--output", default=None, help="also write the rendered manifests to this file")
    from korean_llm import bench, inspect_data

    bench.add_parser(sub)
    inspect_data.add_parser(sub)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.command in STAGES:
        return run_stage(args.command, args.config, args.overrides)
    if args.command == "stage":
        stage = os.environ.get("STAGE") or load_config(args.config, args.overrides).stage
        if stage not in STAGES:
            raise ConfigError(f"STAGE='{stage}': expected one of {', '.join(STAGES)}")
        return run_stage(stage, args.config, args.overrides)
    if args.command == "data":
        from korean_llm import inspect_data

        return inspect_data.run_command(args)
    if args.command == "bench":
        from korean_llm import bench

        return bench.run_command(args)
    from korean_llm import local

    if args.command == "render":
        return local.render_command(args)
    return local.run_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return dispatch(args)
    except KoreanLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("unexpected error (exit %d): please report it with the traceback above", EXIT_BUG)
        return EXIT_BUG


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
