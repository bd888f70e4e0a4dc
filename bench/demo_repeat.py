"""Run the local DAG N times and report the pass count, per-stage wall time and the spread of every evaluate score.

    python bench/demo_repeat.py --runs 10                      # ten runs of `make demo`'s DAG, the same seed
    python bench/demo_repeat.py --seeds 1,2,3,4,5              # one run per seed: how much the model varies
    python bench/demo_repeat.py --runs 3 -f values/local.yaml --set runtimeDefaults.training.max_steps=10
    python bench/demo_repeat.py --runs 2 --set-json 'models[0].stages.rlhf.config.training.learning_rate=0.02'
                                                               # a regressing preference stage: the gate stops it

Each run is `korean-llm run -f VALUES --run-id <prefix>-<i>` in its own process, with its outputs in
`runs/<prefix>-<i>/` (removed afterwards unless `--keep`). The scores come from each run's `eval.json` (a run
stopped by the gate keeps it in `evaluate.partial/`), the stage times from the stages' manifests. The summary is
printed and written as JSON (`--output`, default `runs/<prefix>.json`). Exit 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_once(
    values: list[str], run_id: str, sets: list[str], runs_dir: Path, set_json: list[str] | None = None
) -> dict[str, Any]:
    """One `korean-llm run`; its exit code, wall time, stage times and evaluate scores."""
    cmd = [sys.executable, "-m", "korean_llm", "run", "--run-id", run_id, "--runs-dir", str(runs_dir)]
    for v in values:
        cmd += ["-f", v]
    for s in sets:
        cmd += ["--set", s]
    for j in set_json or []:
        cmd += ["--set-json", j]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    root = runs_dir / run_id
    stages: dict[str, float] = {}
    for manifest in sorted(root.glob("output/*/*/*/manifest.json")):
        data = json.loads(manifest.read_text())
        if "wall_seconds" in data.get("timings", {}):
            stages[data["stage"]] = data["timings"]["wall_seconds"]
    reports = sorted(root.glob("output/*/*/evaluate*/eval.json"))
    report = json.loads(reports[0].read_text()) if reports else None
    return {
        "run_id": run_id,
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "stage_seconds": stages,
        "gate": report["status"] if report else None,
        "candidate": report["candidate"]["scores"] if report else {},
        "baseline": (report.get("baseline") or {}).get("scores") or {} if report else {},
        "failed_checks": [c for c in report["checks"] if not c["passed"]] if report else [],
        "output_tail": proc.stdout[-2000:] if proc.returncode else "",
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "stdev": statistics.pstdev(values),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    stage_names = sorted({s for r in runs for s in r["stage_seconds"]})
    score_names = sorted({k for r in runs for k in r["candidate"]})
    return {
        "runs": len(runs),
        "passed": sum(r["exit_code"] == 0 for r in runs),
        "exit_codes": [r["exit_code"] for r in runs],
        "wall_seconds": spread([r["wall_seconds"] for r in runs]),
        "stage_seconds": {
            s: spread([r["stage_seconds"][s] for r in runs if s in r["stage_seconds"]]) for s in stage_names
        },
        "candidate_scores": {
            k: spread([float(r["candidate"][k]) for r in runs if r["candidate"].get(k) is not None])
            for k in score_names
        },
        "baseline_scores": {
            k: spread([float(r["baseline"][k]) for r in runs if r["baseline"].get(k) is not None])
            for k in sorted({k for r in runs for k in r["baseline"]})
        },
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"passed {summary['passed']} of {summary['runs']} (exit codes {summary['exit_codes']})")

    def row(name: str, s: dict[str, float]) -> str:
        return f"  {name:<28} {s['min']:>10.4g} {s['median']:>10.4g} {s['max']:>10.4g} {s['stdev']:>10.3g}"

    print(f"  {'':<28} {'min':>10} {'median':>10} {'max':>10} {'stdev':>10}")
    print(row("wall seconds", summary["wall_seconds"]))
    for name, s in summary["stage_seconds"].items():
        print(row(f"{name} seconds", s))
    for name, s in summary["candidate_scores"].items():
        print(row(f"candidate {name}", s))
    for name, s in summary["baseline_scores"].items():
        print(row(f"baseline {name}", s))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-f", "--values", action="append", default=None, help="values file(s) (default values/local.yaml)")
    ap.add_argument("--runs", type=int, default=None, help="runs with the values' own seed")
    ap.add_argument("--seeds", default=None, help="comma-separated run.seed values, one run each")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="helm --set for every run")
    ap.add_argument(
        "--set-json", dest="set_json", action="append", default=[], help="helm --set-json for every run (floats)"
    )
    ap.add_argument("--prefix", default="repeat")
    ap.add_argument("--runs-dir", default=str(REPO / "runs"))
    ap.add_argument("--output", default=None)
    ap.add_argument("--keep", action="store_true", help="keep each run's folder")
    args = ap.parse_args(argv)
    if (args.runs is None) == (args.seeds is None):
        ap.error("give either --runs N or --seeds S1,S2,...")
    plan: list[list[str]]
    if args.seeds is not None:
        seeds = [int(s) for s in args.seeds.split(",")]
        plan = [[*args.sets, f"runtimeDefaults.run.seed={s}"] for s in seeds]
    else:
        if args.runs < 1:
            ap.error("--runs must be at least 1")
        plan = [list(args.sets) for _ in range(args.runs)]
    runs_dir = Path(args.runs_dir).resolve()
    values = args.values or ["values/local.yaml"]
    results = []
    for i, sets in enumerate(plan, start=1):
        run_id = f"{args.prefix}-{i}"
        shutil.rmtree(runs_dir / run_id, ignore_errors=True)
        result = run_once(values, run_id, sets, runs_dir, args.set_json)
        result["sets"] = [*sets, *args.set_json]
        results.append(result)
        ppl = result["candidate"].get("perplexity")
        print(
            f"{run_id}: exit {result['exit_code']}, {result['wall_seconds']} s, candidate perplexity {ppl}", flush=True
        )
        if not args.keep:
            shutil.rmtree(runs_dir / run_id, ignore_errors=True)
    summary = {"values": values, "sets": [*args.sets, *args.set_json], **summarise(results), "results": results}
    out = Path(args.output) if args.output else runs_dir / f"{args.prefix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print_summary(summary)
    print(f"summary: {out}")
    return 0 if summary["passed"] == summary["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
