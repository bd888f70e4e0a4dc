"""Exit codes: the README's table is the codes `korean_llm.errors` has, and 129 is what transient failures exit with.

Transient failures are built the way the libraries raise them (versions of constraints.txt): transformers 5.17
`utils/hub.py` `cached_files` raises OSError("We couldn't connect to ...") from huggingface_hub's
LocalEntryNotFoundError, and OSError("... is not a local folder and is not a valid model identifier ...") from
RepositoryNotFoundError; datasets 4.8 `load.py` raises ConnectionError("Couldn't reach '<id>' on the Hub
(LocalEntryNotFoundError)"); a network volume that drops gives OSError(EIO) or OSError(ESTALE).
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from korean_llm import errors
from korean_llm.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster is online; the suite runs with HF_HUB_OFFLINE=1 (conftest.py), which huggingface_hub reads once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_the_readme_table_lists_exactly_the_exit_codes_of_the_runtime() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Exit codes") :]
    section = section[: section.index("\n\n", section.index("| code"))]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.M)}
    constants = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert documented == constants, (documented, constants)
    # the training operator restarts exactly the codes >= 128 (kubeflow/trainer v1.9.4 IsRetryableExitCode)
    retried = {int(m) for m in re.findall(r"^\| (\d+) \|.*\| retried \|$", section, flags=re.M)}
    assert retried == {c for c in constants if c >= 128} == {errors.EXIT_RETRYABLE, errors.EXIT_TERMINATED}


def _raised_from(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as exc:
        return exc


def _http_error(status: int) -> HfHubHTTPError:
    request = httpx.Request("HEAD", "https://huggingface.co/Qwen/Qwen2.5-7B/resolve/main/config.json")
    return HfHubHTTPError(f"{status} error", response=httpx.Response(status, request=request))


HUB_DOWN = _raised_from(
    OSError(
        "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached files."
    ),
    LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub"),
)
NO_SUCH_MODEL = _raised_from(
    OSError("Qwen/Qwen2.5-8B is not a local folder and is not a valid model identifier listed on the hub"),
    RepositoryNotFoundError(
        "404 Client Error", response=httpx.Response(404, request=httpx.Request("GET", "https://x"))
    ),
)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (HUB_DOWN, True),
        (_raised_from(OSError("There was a specific connection error"), _http_error(503)), True),
        (_http_error(429), True),
        (ConnectionError("Couldn't reach 'beomi/KoAlpaca-v1.1a' on the Hub (LocalEntryNotFoundError)"), True),
        (httpx.ConnectError("[Errno 111] Connection refused"), True),
        (OSError(errno.EIO, "Input/output error", "/output/qwen7b/r1/cpt.partial/checkpoints"), True),
        (OSError(errno.ESTALE, "Stale file handle", "/data/qwen7b/r1/processed"), True),
        (NO_SUCH_MODEL, False),
        (_http_error(401), False),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/raw/web.jsonl"), False),
        (OSError(errno.ENOSPC, "No space left on device", "/output"), False),
        (ValueError("malformed JSON"), False),
    ],
)
def test_transient_failures_are_told_from_permanent_ones(exc: BaseException, expected: bool) -> None:
    assert errors.transient(exc) is expected


def test_offline_mode_makes_an_unreachable_hub_a_permanent_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not errors.transient(HUB_DOWN)
    assert not errors.transient(ConnectionError("Couldn't reach 'x/y' on the Hub (OfflineModeIsEnabled)"))


def _cpt_config(tmp_path: Path, base_model: str) -> str:
    docs = tmp_path / "docs.jsonl"
    text = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다. " * 5
    docs.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    return _config(
        tmp_path, {"stage": "cpt", "model": {"base_model": base_model}, "data": {"sources": [{"path": str(docs)}]}}
    )


def _config(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / f"{data['stage']}.yaml"
    base = {"run": {"data_root": str(tmp_path / "data"), "output_root": str(tmp_path / "out")}}
    path.write_text(yaml.safe_dump({**base, "metrics": {"enabled": False}, **data}), encoding="utf-8")
    return str(path)


def test_a_stage_exits_129_when_the_hub_cannot_be_reached_for_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import transformers

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise HUB_DOWN

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unreachable)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        json.dumps({"text": "대한민국은 민주공화국이다. " * 20}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    config = _config(
        tmp_path,
        {"stage": "cpt", "model": {"base_model": "Qwen/Qwen2.5-0.5B"}, "data": {"sources": [{"path": str(docs)}]}},
    )
    assert main(["cpt", "--config", config]) == errors.EXIT_RETRYABLE == 129
    err = capsys.readouterr().err
    assert "cannot reach the tokenizer of 'Qwen/Qwen2.5-0.5B' now" in err and config in err
    assert not (tmp_path / "out" / "tiny-ko" / "local" / "cpt").exists()  # nothing published


def test_a_model_that_does_not_exist_is_a_config_error_not_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise NO_SUCH_MODEL

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", missing)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        json.dumps({"text": "대한민국의 주권은 국민에게 있다. " * 20}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    config = _config(
        tmp_path,
        {"stage": "cpt", "model": {"base_model": "Qwen/Qwen2.5-8B"}, "data": {"sources": [{"path": str(docs)}]}},
    )
    assert main(["cpt", "--config", config]) == errors.EXIT_INVALID


def test_preprocess_exits_129_when_a_hub_dataset_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import datasets

    def unreachable(path: str, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    config = _config(tmp_path, {"stage": "preprocess", "preprocess": {"sft_sources": [{"path": "hf:beomi/KoAlpaca"}]}})
    assert main(["preprocess", "--config", config]) == 129
    assert "data source 'hf:beomi/KoAlpaca': the hub cannot be reached now" in capsys.readouterr().err


def test_a_storage_error_anywhere_in_a_stage_exits_129(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from korean_llm.pipeline import artifacts

    def eio(path: Path, text: str) -> None:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(artifacts, "atomic_write_text", eio)  # the manifest write of a finished stage
    src = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"질문 {i}"}, {"role": "assistant", "content": f"답 {i}"}]}
        for i in range(3)
    ]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = _config(tmp_path, {"stage": "preprocess", "preprocess": {"sft_sources": [{"path": str(src)}]}})
    assert main(["preprocess", "--config", config]) == 129
    err = capsys.readouterr().err
    assert "transient failure" in err and "Input/output error" in err
