"""The deploy stage: merge, verification and publication of a release."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from korean_llm.config.base import Strict


class DeployConfig(Strict):
    """Merge, verify and publish the evaluated model as `<output_root>/<model>/releases/<version>/`."""

    version: str | None = Field(None, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # None: the run id
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    # Max difference accepted between the merged and the adapter model's logits (float32) and between the saved
    # and the in-memory 16-bit weights. 16-bit rounding itself is reported, not limited: it grows with depth.
    merge_tolerance: float = Field(0.01, gt=0)
    keep_releases: int = Field(3, ge=1)
    # auto: export when a converter is found; required: fail without one; off: never.
    gguf: Literal["auto", "required", "off"] = "auto"
    gguf_converter: str | None = None  # path of llama.cpp's convert_hf_to_gguf.py (default: looked up on PATH)
    gguf_outtype: str = "f16"
