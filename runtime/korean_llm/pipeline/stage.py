"""Lifecycle of one stage process: skip when already done, work folder, metrics, tracking, manifest, atomic publish."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from korean_llm import dist
from korean_llm.config import StageConfig
from korean_llm.data import RejectLog
from korean_llm.errors import DataError, ManifestError
from korean_llm.observe.events import emit_event
from korean_llm.observe.metrics import StageMetrics, gpu_peak_memory
from korean_llm.observe.tracking import ExperimentTracker
from korean_llm.pipeline.artifacts import Manifest, StageDir
from korean_llm.pipeline.locking import DirLock, held_lock
from korean_llm.pipeline.reproducibility import configure

log = logging.getLogger("korean_llm")


@dataclass
class StageContext:
    cfg: StageConfig
    dir: StageDir
    metrics: StageMetrics
    lock: DirLock | None = None  # the work folder's lock (rank 0 holds it; None on the other ranks)
    # How each input file was read (format, encoding and why, records), from record_rejects; goes to the manifest.
    inputs_read: list[dict[str, Any]] | None = None

    def ensure_held(self, doing: str) -> None:
        """Exit 2 (LockHeld) when another process took the work folder's lock over: called right before every write
        that deletes, replaces or publishes shared files, so an owner that stalled and lost its lock writes none."""
        if self.lock is not None:
            self.lock.ensure_held(doing)

    def manifest(self, **fields: Any) -> Manifest:
        """A manifest with the fields every stage shares already filled in."""
        prev = self.cfg.run.previous_stage
        base = {
            "stage": self.cfg.stage,
            "model_name": self.cfg.run.model_name,
            "run_id": self.cfg.run.run_id,
            "base_model": self.cfg.model.base_model or "",
            "config_hash": self.cfg.fingerprint(),
            "init_from": str(self.cfg.run.stage_dir(prev)) if prev else None,
        }
        if self.inputs_read is not None:
            fields["extra"] = {"inputs_read": self.inputs_read, **(fields.get("extra") or {})}
        return Manifest(**{**base, **fields})

    def record_rejects(self, rejects: RejectLog, what: str) -> None:
        """Write rejected.jsonl, print the counts by reason, and fail above the configured fraction."""
        self.inputs_read = [*(self.inputs_read or []), *rejects.read.as_dict()]
        if dist.is_main():
            rejects.write(self.dir.work / "rejected.jsonl")
        if rejects.total:
            counts = ", ".join(f"{reason}: {n}" for reason, n in rejects.counts().items())
            log.warning(
                "%s: rejected %d of %d rows (%s); details in %s",
                what,
                rejects.total,
                rejects.rows_in,
                counts,
                self.dir.work / "rejected.jsonl",
            )
        try:
            rejects.check(self.cfg.data.max_rejected_fraction, what)
        except DataError as exc:
            sources = ", ".join(s.path for s in self.cfg.data.sources)
            raise DataError(f"{exc} (sources: {sources}; rejected rows: {self.dir.work / 'rejected.jsonl'})") from None


def stage_lock(cfg: StageConfig, sdir: StageDir) -> DirLock:
    """The lock on `<stage>.partial/`: `<output>/<stage>.lock/` beside it (see korean_llm.pipeline.locking)."""
    lc = cfg.lock
    return DirLock(
        sdir.work.with_name(f"{sdir.final.name}.lock"),
        what=f"the {cfg.stage} work folder {sdir.work}",
        info={"stage": cfg.stage, "run_id": cfg.run.run_id, "model_name": cfg.run.model_name},
        stale_seconds=lc.stale_seconds,
        heartbeat_seconds=lc.heartbeat_seconds,
        wait=lc.wait,
        wait_timeout_seconds=lc.wait_timeout_seconds,
    )


def _already_done(cfg: StageConfig, sdir: StageDir) -> Manifest | None:
    done = sdir.completed_manifest()
    if done is None:
        return None
    if done.config_hash != cfg.fingerprint():
        raise ManifestError(
            f"{sdir.final}: already finished with another config (hash {done.config_hash}, now "
            f"{cfg.fingerprint()}); start a new run id or remove the folder"
        )
    log.info("%s: already complete in %s, nothing to do", cfg.stage, sdir.final)
    emit_event({"type": "skipped", "stage": cfg.stage, "reason": "already complete"})
    return done


def execute(cfg: StageConfig, body: Callable[[StageContext], Manifest]) -> Manifest:
    """Run `body` in the stage's work folder and publish its manifest; a finished stage is not run again.

    Rank 0 holds the work folder's lock from before it looks at the folder until the folder is published: a
    second process of the same stage and run refuses (exit 2) or waits (`lock.wait`), and finds the stage
    complete once it gets the lock.
    """
    sdir = StageDir(cfg.run.output_dir, cfg.stage_folder)
    done = _already_done(cfg, sdir)
    if done is not None:
        return done
    lock = stage_lock(cfg, sdir) if dist.is_main() else None
    with held_lock(lock):
        done = _already_done(cfg, sdir) if lock is not None else None  # finished by the process we waited for
        if done is not None:
            return done
        return _execute_locked(cfg, sdir, body, lock)


def _execute_locked(
    cfg: StageConfig, sdir: StageDir, body: Callable[[StageContext], Manifest], lock: DirLock | None
) -> Manifest:
    if dist.is_main():
        sdir.prepare()
    dist.barrier()
    sdir.work.mkdir(parents=True, exist_ok=True)
    reproducibility = configure(cfg)
    metrics = StageMetrics(cfg)
    metrics.serve()
    tracker = ExperimentTracker(cfg).start()
    try:
        manifest = body(StageContext(cfg, sdir, metrics, lock))
        manifest.extra.setdefault("reproducibility", reproducibility)
        peak = gpu_peak_memory()
        if peak is not None:
            manifest.metrics.setdefault("peak_gpu_memory_bytes", peak)
        if dist.is_main():  # one process publishes; the others wait until the stage folder is in place
            if lock is not None:
                lock.ensure_held(f"publishing {sdir.final}")
            sdir.commit(manifest, keep_checkpoints=cfg.checkpoint.keep_after_success)
        dist.barrier()
    except BaseException as exc:
        metrics.close(failed=True)
        tracker.finish(error=exc)
        raise
    metrics.close(failed=False)
    tracker.finish(stage_dir=sdir.final, manifest=manifest)
    emit_event({"type": "done", "stage": cfg.stage, "metrics": manifest.metrics})
    log.info("%s: published %s", cfg.stage, sdir.final)
    return manifest
