"""Locks on shared volumes: one process per stage work folder, one publish per releases folder.

The chart's volumes are often NFS, where `flock`/`fcntl` locks are advisory, depend on the server's lock
manager and are lost silently when a client reboots. These locks rest only on what NFS makes atomic: `mkdir`
of a new directory (it fails with EEXIST for everybody but one caller, on NFSv3 and v4 alike) and `rename`.

    <name>.lock/            created with one mkdir: whoever creates it owns the lock
    <name>.lock/owner.json  host, pid, stage, run, a random token and a heartbeat time

The owner rewrites `owner.json` every `heartbeat_seconds` from a background thread. Another process judges
the lock stale when the owner is a dead pid on its own host, or when the heartbeat is older than
`stale_seconds` (another host: clocks are assumed NTP-synchronised to well under that). A stale lock is broken
under a second lock (`<name>.lock.break`, same protocol) so that two processes cannot both break it and
both take it. A process that finds a live owner refuses at once (`LockHeld`, exit 2, naming the owner), or
waits for it with `lock.wait: true` (`--wait-lock`).

The owner checks that the lock is still its own (`ensure_held`, exit 2) right before every write that deletes,
replaces or publishes shared files: a process that stalled past `stale_seconds` and lost its lock to another one
must not write over the new owner's work. A training stage looks at every step's end (`taken_over`) and stops
there without saving a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from korean_llm.errors import KoreanLLMError, LockHeld

log = logging.getLogger("korean_llm")

OWNER = "owner.json"


def _read_owner(lock_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((lock_dir / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def describe(owner: dict[str, Any] | None, now: float | None = None) -> str:
    """`pid 123 on host a (stage cpt, run r1), started 12:00:01 UTC, heartbeat 3s ago`."""
    if owner is None:
        return "an owner whose owner.json is not written yet"
    now = time.time() if now is None else now
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(owner.get("started_at", 0))))
    age = now - float(owner.get("heartbeat_at", 0))
    what = ", ".join(f"{k} {owner[k]}" for k in ("stage", "run_id") if owner.get(k))
    return (
        f"pid {owner.get('pid')} on host {owner.get('host')}"
        + (f" ({what})" if what else "")
        + f", started {started}, heartbeat {age:.0f}s ago"
    )


class DirLock:
    """An mkdir lock with owner, heartbeat and stale-owner detection (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        what: str,
        info: dict[str, Any] | None = None,
        stale_seconds: float = 120.0,
        heartbeat_seconds: float = 10.0,
        wait: bool = False,
        wait_timeout_seconds: float | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        if heartbeat_seconds * 2 > stale_seconds:
            raise ValueError(f"lock heartbeat {heartbeat_seconds}s must be at most half of stale {stale_seconds}s")
        self.path = path
        self.what = what
        self.info = dict(info or {})
        self.stale_seconds = stale_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.wait = wait
        self.wait_timeout_seconds = wait_timeout_seconds
        self.poll_seconds = poll_seconds
        self.token = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # -- owner file ----------------------------------------------------------------------------------------
    def _owner_record(self) -> dict[str, Any]:
        return {
            **self.info,
            "host": self.host,
            "pid": os.getpid(),
            "token": self.token,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
        }

    def _write_owner(self) -> None:
        tmp = self.path / f".{OWNER}.tmp-{self.token}"
        tmp.write_text(json.dumps(self._owner_record()), encoding="utf-8")
        os.replace(tmp, self.path / OWNER)

    # -- staleness -----------------------------------------------------------------------------------------
    def stale_reason(self, owner: dict[str, Any] | None, now: float | None = None) -> str | None:
        """Why the lock at `self.path` (with `owner`) may be broken, or None when its owner looks alive."""
        now = time.time() if now is None else now
        if owner is None:
            # mkdir done, owner.json not written yet (or the owner died between the two): judge by the folder's age
            try:
                age = now - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            return f"no owner record for {age:.0f}s" if age > self.stale_seconds else None
        if owner.get("host") == self.host and isinstance(owner.get("pid"), int) and not _pid_alive(owner["pid"]):
            return f"pid {owner['pid']} is not running on this host"
        age = now - float(owner.get("heartbeat_at", 0))
        if age > self.stale_seconds:
            return f"heartbeat {age:.0f}s old (stale after {self.stale_seconds:.0f}s)"
        return None

    def _break_if_stale(self) -> bool:
        """Remove the lock when its owner is stale, under `<lock>.break`; True when it was removed."""
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            breaker.mkdir()
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):  # a breaker that died: its folder ages like a lock
                if time.time() - breaker.stat().st_mtime > self.stale_seconds:
                    shutil.rmtree(breaker, ignore_errors=True)
            return False
        try:
            owner = _read_owner(self.path)
            reason = self.stale_reason(owner)
            if reason is None:
                return False
            log.warning("%s: breaking the stale lock of %s: %s", self.path, describe(owner), reason)
            grave = self.path.with_name(f"{self.path.name}.stale-{self.token}")
            try:
                os.rename(self.path, grave)
            except FileNotFoundError:
                return True  # its owner released it meanwhile
            shutil.rmtree(grave, ignore_errors=True)
            return True
        finally:
            shutil.rmtree(breaker, ignore_errors=True)

    # -- acquire / release ---------------------------------------------------------------------------------
    def _try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
        except FileExistsError:
            return False
        self._write_owner()
        return True

    def acquire(self) -> DirLock:
        deadline = None if self.wait_timeout_seconds is None else time.time() + self.wait_timeout_seconds
        announced = False
        while True:
            if self._try_acquire():
                break
            if self._break_if_stale() and self._try_acquire():
                break
            owner = _read_owner(self.path)
            if not self.wait:
                raise LockHeld(
                    f"{self.path}: {self.what} is locked by {describe(owner)}; another process is working on it. "
                    "Wait for it to finish, or pass --wait-lock (lock.wait: true) to wait; a crashed owner's lock "
                    f"is taken over once its heartbeat is older than lock.stale_seconds ({self.stale_seconds:.0f}s)"
                )
            if deadline is not None and time.time() > deadline:
                raise LockHeld(
                    f"{self.path}: {self.what} still locked by {describe(owner)} after waiting "
                    f"{self.wait_timeout_seconds:.0f}s (lock.wait_timeout_seconds)"
                )
            if not announced:
                log.info("%s: waiting for %s to release %s", self.path, describe(owner), self.what)
                announced = True
            time.sleep(self.poll_seconds)
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat {self.path.name}", daemon=True)
        self._thread.start()
        log.debug("%s: locked (%s)", self.path, self.what)
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            owner = _read_owner(self.path)
            if owner is None and self.path.is_dir():
                continue  # unreadable this once (a cache on NFS): judge at the next beat
            if owner is None or owner.get("token") != self.token:
                self.lost = True
                log.error("%s: lock lost (now held by %s); this process stops writing", self.path, describe(owner))
                return
            with contextlib.suppress(OSError):  # a full disk must not kill the heartbeat thread silently
                self._write_owner()

    def taken_over(self) -> bool:
        """True once another process is known to hold the lock: the heartbeat saw it, or the owner record names
        another token, or the lock folder is gone. Cheap (one small read): a training stage asks at every step.

        An owner record unreadable this once while the folder is there is not taken as proof (a cache on NFS); the
        heartbeat judges it again, and `ensure_held` before any publish refuses on it."""
        if self.lost:
            return True
        owner = _read_owner(self.path)
        if owner is None and self.path.is_dir():
            return False
        if owner is None or owner.get("token") != self.token:
            self.lost = True
            log.error("%s: lock lost (now held by %s); this process stops writing", self.path, describe(owner))
        return self.lost

    def held(self) -> bool:
        owner = _read_owner(self.path)
        return not self.lost and owner is not None and owner.get("token") == self.token

    def ensure_held(self, doing: str = "publishing") -> None:
        """Refuse to go on (exit 2) when another process has taken the lock over.

        Called right before every destructive or publishing write; `doing` names the write for the message."""
        if not self.held():
            self.lost = True
            raise LockHeld(
                f"{self.path}: the lock on {self.what} was taken over by {describe(_read_owner(self.path))}: this "
                f"process stalled past lock.stale_seconds ({self.stale_seconds:.0f}s) while it worked, and stopped "
                f"before {doing}, leaving the new owner's files alone"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_seconds + 5)
            self._thread = None
        if not self.held():
            return  # not ours any more: leave the new owner's lock alone
        grave = self.path.with_name(f"{self.path.name}.released-{self.token}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, grave)
            shutil.rmtree(grave, ignore_errors=True)

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def held_lock(lock: DirLock | None) -> Iterator[DirLock | None]:
    """`with held_lock(lock_or_none):` — a no-op for None (the ranks other than 0)."""
    if lock is None:
        yield None
        return
    lock.acquire()
    try:
        yield lock
    finally:
        try:
            lock.release()
        except KoreanLLMError:
            raise
        except OSError as exc:  # releasing must never hide the stage's own error
            log.warning("%s: could not release the lock: %s", lock.path, exc)
