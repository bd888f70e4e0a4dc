"""Throughput and memory of the preprocess stage on a generated Korean corpus.

    python bench/preprocess_throughput.py --sizes 25,100 --workers 1,2 [--workdir /tmp/preprocess-bench]

Builds a JSONL corpus of the requested size (MB) from the konlpy texts (constitution and bills):
every document is a random run of their sentences with perturbations (typos, changed numbers,
shuffled order), so near-duplicate removal keeps most of them; 3 % exact and 3 % near copies are mixed
in so dedup has work. The smaller corpora are prefixes of the largest. Then it runs
`python -m korean_llm preprocess` for each (size, workers) pair with the default pipeline and reports MB/s,
documents/s, the peak RSS of the largest process (from `wait4`, as `time -v` reports it) and the peak summed
RSS of the whole process tree (sampled from /proc every 0.1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runtime"))

MB = 1024 * 1024
HANGUL = [chr(c) for c in range(0xAC00, 0xD7A4, 7)]


def sentences() -> list[str]:
    from korean_llm.builtin import corpus_texts

    out = []
    for text in corpus_texts():
        for line in text.splitlines():
            out.extend(s.strip() for s in re.split(r"(?<=다\.)\s+", line) if len(s.strip()) >= 10)
    return out


def perturb(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(max(1, len(chars) // 100)):  # ~1 % typos
        chars[rng.randrange(len(chars))] = rng.choice(HANGUL)
    return re.sub(r"\d+", lambda m: str(rng.randint(1, 10 ** len(m.group()))), "".join(chars))


def build_corpus(path: Path, size_mb: float, seed: int = 0) -> None:
    """Documents of 15-60 sentences; 3 % exact and 3 % near copies of earlier documents."""
    if path.is_file() and path.stat().st_size >= size_mb * MB:
        return
    pool = sentences()
    rng = random.Random(seed)
    recent: list[str] = []
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        while written < size_mb * MB:
            roll = rng.random()
            if roll < 0.03 and recent:
                doc = rng.choice(recent)
            elif roll < 0.06 and recent:
                doc = rng.choice(recent) + f" ({rng.randint(1, 99)}차 개정)"
            else:
                picked = rng.sample(pool, rng.randint(15, 60))
                paragraphs = [" ".join(picked[i : i + 5]) for i in range(0, len(picked), 5)]
                doc = perturb(rng, "\n".join(paragraphs))
                recent = [*recent[-999:], doc]
            line = json.dumps({"text": doc}, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
    os.replace(tmp, path)


def prefix_corpus(big: Path, path: Path, size_mb: float) -> None:
    if path.is_file():
        return
    written = 0
    with open(big, "rb") as src, open(path, "wb") as dst:
        for line in src:
            if written >= size_mb * MB:
                break
            dst.write(line)
            written += len(line)


def tree_rss(pid: int) -> int:
    """Summed VmRSS (bytes) of `pid` and its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, AttributeError):
            continue
    return total


def run_stage(workdir: Path, corpus: Path, workers: int, run_id: str) -> dict[str, float]:
    import yaml

    config = {
        "stage": "preprocess",
        "run": {
            "model_name": "bench",
            "run_id": run_id,
            "data_root": str(workdir / "data"),
            "output_root": str(workdir / "output"),
        },
        "metrics": {"enabled": False},
        "preprocess": {"cpt_sources": [{"path": str(corpus)}], "num_proc": workers},
    }
    for folder in (workdir / "data" / "bench" / run_id, workdir / "output" / "bench" / run_id):
        shutil.rmtree(folder, ignore_errors=True)
    cfg_path = workdir / f"{run_id}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True))
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime")}
    cmd = [sys.executable, "-m", "korean_llm", "preprocess", "--config", str(cfg_path)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    err = proc.stderr.read()
    # the largest RSS of the process and of every descendant it waited for (what `time -v` reports), in kB
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"preprocess failed (exit {code}):\n{err[-3000:]}")
    max_rss_kb = usage.ru_maxrss
    full = json.loads((workdir / "data" / "bench" / run_id / "processed" / "stats.json").read_text())
    stats = full["inputs"]["cpt"]
    size = corpus.stat().st_size
    return {
        "input_mb": size / MB,
        "workers": workers,
        "wall_s": wall,
        "mb_per_s": size / MB / wall,
        "docs_per_s": stats["rows_in"] / wall,
        "docs_in": stats["rows_in"],
        "docs_out": stats["rows_out"],
        "exact_dups": stats["removed_by_step"].get("exact_dedup", 0),
        "near_dups": stats["removed_by_step"].get("near_dedup", 0),
        "cpu_main_s": float(full["cpu_seconds"]["main"]),
        "cpu_workers_s": float(full["cpu_seconds"]["workers"]),
        "max_rss_mb": max_rss_kb / 1024,
        "tree_rss_mb": peak_tree / MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="25,100", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--workers", default="1,2", help="num_proc values, comma-separated")
    parser.add_argument("--workdir", default="/tmp/preprocess-bench")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    sizes = sorted(float(s) for s in args.sizes.split(","))
    workers = [int(w) for w in args.workers.split(",")]
    biggest = workdir / f"corpus-{sizes[-1]:g}mb.jsonl"
    t0 = time.perf_counter()
    build_corpus(biggest, sizes[-1])
    print(
        f"corpus {biggest} ({biggest.stat().st_size / MB:.1f} MB) ready in {time.perf_counter() - t0:.1f} s", flush=True
    )
    results = []
    for size in sizes:
        corpus = workdir / f"corpus-{size:g}mb.jsonl"
        prefix_corpus(biggest, corpus, size)
        # Every size with the first worker count; the largest with all of them (the scaling figure).
        for n in workers if size == sizes[-1] else workers[:1]:
            r = run_stage(workdir, corpus, n, f"s{size:g}-w{n}")
            results.append(r)
            print(json.dumps({k: round(v, 2) for k, v in r.items()}), flush=True)
    header = [
        "input MB",
        "workers",
        "wall s",
        "MB/s",
        "docs/s",
        "docs in -> out",
        "exact / near dups",
        "CPU s main / workers",
        "peak RSS largest process",
        "peak RSS all processes",
    ]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        cells = [
            f"{r['input_mb']:.0f}",
            f"{r['workers']:.0f}",
            f"{r['wall_s']:.1f}",
            f"{r['mb_per_s']:.2f}",
            f"{r['docs_per_s']:,.0f}",
            f"{r['docs_in']:,.0f} -> {r['docs_out']:,.0f}",
            f"{r['exact_dups']:,.0f} / {r['near_dups']:,.0f}",
            f"{r['cpu_main_s']:.1f} / {r['cpu_workers_s']:.1f}",
            f"{r['max_rss_mb']:.0f} MB",
            f"{r['tree_rss_mb']:.0f} MB",
        ]
        print("| " + " | ".join(cells) + " |")
    top = max(r["input_mb"] for r in results)
    big = [r for r in results if r["input_mb"] == top]
    if len(big) > 1:
        gain = big[-1]["mb_per_s"] / big[0]["mb_per_s"]
        print(f"\nspeed-up {big[0]['workers']:.0f} -> {big[-1]['workers']:.0f} workers (wall): {gain:.2f}x")
    for r in big:
        # CPU-time view, independent of other load on the machine: one worker cleans `cleaning` MB per CPU-second,
        # the main process (read, dedup, write) keeps up with `main` MB per CPU-second.
        cleaning = r["input_mb"] / (r["cpu_workers_s"] or r["cpu_main_s"])
        print(f"workers={r['workers']:.0f}: cleaning {cleaning:.2f} MB per worker CPU-second", end="")
        if r["cpu_workers_s"]:
            print(f", main process {r['input_mb'] / r['cpu_main_s']:.2f} MB per CPU-second", end="")
        print()


if __name__ == "__main__":
    main()
