"""The deploy stage: merge, verification and publication of a release."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from korean_llm.config.base import Strict


class DeployConfig(Strict):
    """Merge, verify and publish the evaluated model as `<output_root>/<model>/releases/<version>/`."""

    version: str | None = Field(None, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # None: the run id
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    # The type the model is loaded and merged in: float32 (4 bytes per parameter, the exact merge) or `dtype`
    # itself (2 bytes; for models whose float32 copy does not fit the node, e.g. 72B). The chart sizes the
    # deploy step's memory from this and model.size.
    merge_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # Max difference accepted between the merged and the adapter model's logits (in merge_dtype) and between the
    # saved and the in-memory 16-bit weights. 16-bit rounding itself is reported, not limited: it grows with depth.
    merge_tolerance: float = Field(0.01, gt=0)
    keep_releases: int = Field(3, ge=1)
    # auto: export when a converter is found; required: fail without one; off: never.
    gguf: Literal["auto", "required", "off"] = "auto"
    gguf_converter: str | None = None  # path of llama.cpp's convert_hf_to_gguf.py (default: looked up on PATH)
    gguf_outtype: str = "f16"

    @model_validator(mode="after")
    def _merge_in_float32_or_the_release_type(self) -> DeployConfig:
        if self.merge_dtype not in ("float32", self.dtype):
            raise ValueError(
                f"deploy.merge_dtype {self.merge_dtype!r} must be 'float32' or deploy.dtype ({self.dtype!r}): "
                "merging in one 16-bit type and releasing in the other rounds every weight twice"
            )
        return self
