"""Errors that end a stage, each with the exit code the PyTorchJob's `restartPolicy: ExitCode` acts on.

The codes and what they mean are the table "Exit codes, resume and signals" of the README (tests/test_exit_codes.py
holds the two together). The training operator restarts a pod whose exit code is >= 128 and fails the job
otherwise (kubeflow/trainer v1.9.4, pkg/util/train/train_util.go `IsRetryableExitCode`, used by
pkg/controller.v1/common/pod.go), so a transient failure exits 129 and a SIGTERM 143, everything else below 128.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INVALID = 2
EXIT_GATE = 3
EXIT_DISK_FULL = 4
EXIT_FORBIDDEN = 5  # `korean-llm pipeline`: the cluster refused the request (RBAC)
EXIT_TIMEOUT = 124  # `korean-llm pipeline wait --timeout`: the run had not ended (the code of coreutils' timeout)
EXIT_RETRYABLE = 129
EXIT_TERMINATED = 143


class KoreanLLMError(Exception):
    """Base class: carries the process exit code."""

    exit_code = EXIT_BUG


class ConfigError(KoreanLLMError):
    """The configuration is invalid: the message names the file and key."""

    exit_code = EXIT_INVALID


class PermissionDenied(KoreanLLMError):
    """The cluster refused a request of `korean-llm pipeline` (RBAC): the message names verb, resource, namespace."""

    exit_code = EXIT_FORBIDDEN


class DataError(KoreanLLMError):
    """The input data is missing, empty or rejected beyond the allowed fraction."""

    exit_code = EXIT_INVALID


class ManifestError(KoreanLLMError):
    """The previous stage's manifest is missing or does not match this stage's config."""

    exit_code = EXIT_INVALID


class LockHeld(KoreanLLMError):
    """Another process holds the lock on this stage's work folder (or the releases folder): the message names it."""

    exit_code = EXIT_INVALID


class DiskFull(KoreanLLMError):
    """A write failed for lack of space: the message names the path and the free space; a retry resumes."""

    exit_code = EXIT_DISK_FULL


class GateFailed(KoreanLLMError):
    """A quality gate refused the model."""

    exit_code = EXIT_GATE


class RetryableError(KoreanLLMError):
    """A transient failure (the hub or the network, a storage error): the operator should restart the pod."""

    exit_code = EXIT_RETRYABLE


# errno values of failures that a restart can cure: network file systems and connections that dropped.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPIPE,
    }
)


def transient(exc: BaseException) -> bool:
    """True when `exc`, or an error it was raised from, is a failure that a restart can cure.

    - an OSError with an errno of `TRANSIENT_ERRNOS` (storage or socket);
    - huggingface_hub 1.x: `LocalEntryNotFoundError` (the hub could not be reached and the files are not cached,
      outside offline mode), an `HfHubHTTPError` with status 429 or 5xx;
    - httpx (the hub client's transport): `TransportError` (connect, read, timeout); the builtin ConnectionError and
      TimeoutError (datasets raises ConnectionError when the hub cannot be reached);
    transformers 5.17 (`utils/hub.py`, `cached_files`) turns these into OSError("We couldn't connect to ...") and
    OSError("There was a specific connection error ...") raised from the hub error, hence the walk along `__cause__`.
    """
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if _transient_one(node):
            return True
        node = node.__cause__ or node.__context__
    return False


def _transient_one(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    import httpx  # both come with transformers; imported here to keep this module light
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(exc, ConnectionError | TimeoutError | httpx.TransportError):
        # datasets 4.8 (`load.py`) raises the builtin ConnectionError("Couldn't reach '<id>' on the Hub (...)");
        # in offline mode it does so too, and there no restart helps
        return not constants.HF_HUB_OFFLINE
    if isinstance(exc, LocalEntryNotFoundError):
        return not constants.HF_HUB_OFFLINE  # offline mode and no cache: a configuration matter, not a transient one
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status is not None and (status == 429 or status >= 500)
    return False


class Terminated(KoreanLLMError):
    """SIGTERM arrived; a checkpoint was written and the stage stopped."""

    exit_code = EXIT_TERMINATED


class AccountingError(KoreanLLMError):
    """Rows read != rows kept + rows rejected: a reader lost or doubled rows (a bug; nothing is published)."""

    exit_code = EXIT_BUG
