"""Deploy stage: merge equivalence, release layout, atomic `current` under a crash, pruning, GGUF."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from korean_llm.cli import main as cli_main
from korean_llm.config import load_config
from korean_llm.errors import GateFailed
from korean_llm.pipeline.artifacts import MANIFEST, Manifest, atomic_write_json, read_manifest
from korean_llm.pipeline.release import CRASH_ENV, RESULT_DIR_ENV
from korean_llm.stages import deploy

from .fake_stages import adapter_stage


def _logits(folder: Path | str, adapter: Path | None = None) -> object:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return deploy.probe_logits(model.eval(), AutoTokenizer.from_pretrained(folder))


def _fake_evaluate(run_dir: Path, judged: str) -> None:
    """A passed evaluate stage that judged `judged` (what deploy follows to find the weights)."""
    out = run_dir / "evaluate"
    out.mkdir(parents=True)
    sft = read_manifest(run_dir / judged)
    manifest = Manifest(
        stage="evaluate",
        model_name="tiny-ko",
        run_id=run_dir.name,
        base_model=sft.base_model,
        config_hash="fake-evaluate",
        tokenizer_hash=sft.tokenizer_hash,
        extra={"candidate_stage": judged, "gate": "passed"},
    )
    atomic_write_json(out / MANIFEST, manifest.model_dump(mode="json"))


def test_merged_release_matches_the_adapter_model(
    tmp_path: Path, write_config: Callable[..., Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "output" / "tiny-ko" / "r1"
    sft = adapter_stage(run_dir, lora_scale=3.0)  # a real change to the model, so the check has something to see
    _fake_evaluate(run_dir, "sft")
    monkeypatch.setenv(RESULT_DIR_ENV, str(tmp_path / "result"))
    path = write_config("deploy", {"run": {"run_id": "r1", "previous_stage": "evaluate"}, "deploy": {"version": "v1"}})
    assert cli_main(["deploy", "--config", str(path)]) == 0

    releases = tmp_path / "output" / "tiny-ko" / "releases"
    rel = releases / "v1"
    assert os.readlink(releases / "current") == "v1"
    assert json.loads((releases / "current.json").read_text())["version"] == "v1"
    assert (tmp_path / "result" / "version").read_text() == "v1"
    manifest = read_manifest(run_dir / "deploy", expected_stage="deploy")
    assert manifest.extra["release_version"] == "v1" and manifest.extra["release_path"] == str(rel)
    assert manifest.extra["gguf"].startswith("GGUF export skipped")
    assert manifest.metrics["merge_max_abs_diff"] < 1e-3 and manifest.metrics["save_max_abs_diff"] == 0
    assert manifest.metrics["rounding_max_abs_diff"] > 0  # the 16-bit cast is measured, not hidden
    assert (rel / "model.safetensors").is_file() and not (rel / "adapter_config.json").exists()
    assert json.loads((rel / "config.json").read_text())["dtype"] == "bfloat16"
    from transformers import AutoTokenizer

    assert "<|im_start|>" in AutoTokenizer.from_pretrained(rel).chat_template

    merged, with_adapter, base = _logits(rel), _logits(tiny_model, sft / "adapter"), _logits(tiny_model)
    assert float((merged - with_adapter).abs().max()) < 0.05
    assert float((with_adapter - base).abs().max()) > 0.5  # the merge carried the adapter's change


def test_a_broken_merge_publishes_nothing(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft.tuners.lora import LoraModel

    adapter_stage(tmp_path / "output" / "tiny-ko" / "r1", lora_scale=3.0)
    # A merge that silently drops the adapter: the released model would be the base model.
    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, *a, **kw: self.unload())
    path = write_config("deploy", {"run": {"run_id": "r1", "previous_stage": "sft"}})
    with pytest.raises(GateFailed, match=r"merge_max_abs_diff is .*, above deploy\.merge_tolerance") as err:
        deploy.main(load_config(path, env={}))
    assert err.value.exit_code == 3
    releases = tmp_path / "output" / "tiny-ko" / "releases"
    assert not (releases / "current").exists() and not (releases / "r1").exists()


def _deploy_base(write_config: Callable[..., Path], run_id: str, **deploy_cfg: object) -> Path:
    overrides = {"run": {"run_id": run_id}, "deploy": {"keep_releases": 2, **deploy_cfg}}
    return write_config("deploy", overrides, name=f"deploy-{run_id}.yaml")


def test_current_json_is_a_symlink_through_current_and_never_rewritten(tmp_path: Path) -> None:
    """The pointer and its metadata change in one rename: current.json is a fixed link to current/release.json."""
    from korean_llm.pipeline.release import switch_current

    root = tmp_path / "releases"
    for version in ("r1", "r2"):
        (root / version).mkdir(parents=True)
        (root / version / "release.json").write_text(json.dumps({"version": version}))
    switch_current(root, "r1")
    info = root / "current.json"
    assert info.is_symlink() and os.readlink(info) == "current/release.json"
    assert os.readlink(root / "current") == "r1" and json.loads(info.read_text())["version"] == "r1"
    before = os.lstat(info)
    switch_current(root, "r2")
    assert os.readlink(root / "current") == "r2" and json.loads(info.read_text())["version"] == "r2"
    after = os.lstat(info)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # the same link, untouched
    assert sorted(p.name for p in root.iterdir()) == ["current", "current.json", "r1", "r2"]  # no temporary link


# Where `current` points after a crash at each point: before the switch the old release, after it the new one,
# and current.json always names the same release as `current`.
CRASH_POINTS = {"publish": "r1", "switch": "r1", "switched": "r2"}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_crash_during_publish_keeps_the_previous_current(
    point: str, tmp_path: Path, write_config: Callable[..., Path], cli: Callable[..., object]
) -> None:
    releases = tmp_path / "output" / "tiny-ko" / "releases"
    assert cli_main(["deploy", "--config", str(_deploy_base(write_config, "r1"))]) == 0
    assert os.readlink(releases / "current") == "r1"

    crashed = cli("deploy", "--config", str(_deploy_base(write_config, "r2")), env={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert os.readlink(releases / "current") == CRASH_POINTS[point]
    assert json.loads((releases / "current.json").read_text())["version"] == CRASH_POINTS[point]
    assert os.readlink(releases / "current.json") == "current/release.json"
    assert not (tmp_path / "output" / "tiny-ko" / "r2" / "deploy").exists()  # the stage did not finish

    # The next run finishes the job: the finished release r2 (if published) is reused, the stage completes.
    assert cli_main(["deploy", "--config", str(_deploy_base(write_config, "r2"))]) == 0
    assert os.readlink(releases / "current") == "r2"
    assert json.loads((releases / "current.json").read_text())["version"] == "r2"
    assert (
        read_manifest(tmp_path / "output" / "tiny-ko" / "r2" / "deploy", expected_stage="deploy").extra[
            "release_version"
        ]
        == "r2"
    )
    assert sorted(p.name for p in releases.iterdir()) == ["current", "current.json", "r1", "r2"]

    assert cli_main(["deploy", "--config", str(_deploy_base(write_config, "r3"))]) == 0
    assert sorted(p.name for p in releases.iterdir()) == ["current", "current.json", "r2", "r3"]  # keep_releases 2


def test_gguf_export_runs_the_configured_converter(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    converter = tmp_path / "convert_hf_to_gguf.py"
    converter.write_text(
        "import sys, pathlib\n"
        "args = sys.argv[1:]\n"
        "assert pathlib.Path(args[0], 'config.json').is_file()\n"
        "out, kind = args[args.index('--outfile') + 1], args[args.index('--outtype') + 1]\n"
        "pathlib.Path(out).write_bytes(b'GGUF' + kind.encode())\n"
    )
    assert cli_main(["deploy", "--config", str(_deploy_base(write_config, "r1", gguf_converter=str(converter)))]) == 0
    gguf = tmp_path / "output" / "tiny-ko" / "releases" / "r1" / "model-f16.gguf"
    assert gguf.read_bytes() == b"GGUFf16"
    missing = _deploy_base(write_config, "r2", gguf="required", gguf_converter=str(tmp_path / "nope.py"))
    assert cli_main(["deploy", "--config", str(missing)]) == 2


def test_a_16_bit_merge_releases_the_same_model_within_tolerance(
    tmp_path: Path, write_config: Callable[..., Path], tiny_model: Path
) -> None:
    """deploy.merge_dtype = the release type (72B's setting): half the memory, the adapter still carried over."""
    run_dir = tmp_path / "output" / "tiny-ko" / "r1"
    sft = adapter_stage(run_dir, lora_scale=3.0)
    over = {"run": {"run_id": "r1", "previous_stage": "sft"}, "deploy": {"version": "v1", "merge_dtype": "bfloat16"}}
    assert cli_main(["deploy", "--config", str(write_config("deploy", over))]) == 0
    manifest = read_manifest(run_dir / "deploy", expected_stage="deploy")
    assert manifest.metrics["save_max_abs_diff"] == 0
    assert manifest.metrics["merge_max_abs_diff"] < manifest.metrics["merge_tolerance"]
    rel = tmp_path / "output" / "tiny-ko" / "releases" / "v1"
    merged, with_adapter = _logits(rel), _logits(tiny_model, sft / "adapter")
    assert float((merged - with_adapter).abs().max()) < 0.05  # as close as the float32 merge's release


def test_merge_dtype_is_float32_or_the_release_type(write_config: Callable[..., Path]) -> None:
    path = write_config("deploy", {"deploy": {"dtype": "bfloat16", "merge_dtype": "float16"}})
    assert cli_main(["deploy", "--config", str(path)]) == 2


def test_the_save_check_reads_every_tensor_and_accepts_tied_embeddings(tmp_path: Path, tiny_model: Path) -> None:
    """The tiny model ties lm_head to the embeddings: save_pretrained writes that tensor once."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    assert model.config.tie_word_embeddings
    folder = tmp_path / "saved"
    model.save_pretrained(folder, safe_serialization=True)
    assert "lm_head.weight" not in load_file(folder / "model.safetensors")
    assert deploy._saved_weights_diff(folder, model) == 0.0

    tensors = load_file(folder / "model.safetensors")
    name = next(k for k in tensors if k.endswith("mlp.up_proj.weight"))
    tensors[name] = tensors[name] + 1.0  # a changed tensor is measured
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    assert deploy._saved_weights_diff(folder, model) > 0.9
    del tensors[name]  # a tensor missing from the files
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    assert deploy._saved_weights_diff(folder, model) == float("inf")
