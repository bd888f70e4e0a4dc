"""Errors that end a stage, each with the exit code the PyTorchJob's `restartPolicy: ExitCode` acts on.

| code | meaning                                   | retried by the operator |
|------|-------------------------------------------|-------------------------|
| 0    | success (or the stage was already done)   | -                       |
| 1    | unexpected error (a bug: report it)       | no                      |
| 2    | bad config or bad data                    | no                      |
| 3    | a quality gate failed                     | no                      |
| 129  | transient infrastructure failure          | yes                     |
| 143  | stopped by SIGTERM after a checkpoint     | yes                     |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INVALID = 2
EXIT_GATE = 3
EXIT_RETRYABLE = 129
EXIT_TERMINATED = 143


class KoreanLLMError(Exception):
    """Base class: carries the process exit code."""

    exit_code = EXIT_BUG


class ConfigError(KoreanLLMError):
    """The configuration is invalid: the message names the file and key."""

    exit_code = EXIT_INVALID


class DataError(KoreanLLMError):
    """The input data is missing, empty or rejected beyond the allowed fraction."""

    exit_code = EXIT_INVALID


class ManifestError(KoreanLLMError):
    """The previous stage's manifest is missing or does not match this stage's config."""

    exit_code = EXIT_INVALID


class GateFailed(KoreanLLMError):
    """A quality gate refused the model."""

    exit_code = EXIT_GATE


class RetryableError(KoreanLLMError):
    """A transient failure (network, preemption of a peer): the operator should restart the pod."""

    exit_code = EXIT_RETRYABLE


class Terminated(KoreanLLMError):
    """SIGTERM arrived; a checkpoint was written and the stage stopped."""

    exit_code = EXIT_TERMINATED


class AccountingError(KoreanLLMError):
    """Rows read != rows kept + rows rejected: a reader lost or doubled rows (a bug; nothing is published)."""

    exit_code = EXIT_BUG
