"""EEVE's subword-mean initialisation of new token embeddings (arXiv 2402.14714, section 3).

Each new token's input embedding is the mean of the input embeddings of the base tokens it used to split
into; with untied embeddings its output embedding (lm_head row, and bias if any) is the mean of those
tokens' output rows. Tied models share one matrix, so one write sets both.

The matrix is grown with transformers' `resize_token_embeddings` (transformers 5.17.0,
`modeling_utils.py`): it builds a new `nn.Embedding` (and, for untied models, a new lm_head through
`_get_resized_lm_head`), copies the old rows, updates `config.vocab_size` and calls `tie_weights()` again,
so a tied model stays tied. `mean_resizing=True` would sample the new rows from a Gaussian with the old
rows' mean and covariance (a covariance of hidden_size² over the whole vocabulary); every new row is
overwritten here, so `mean_resizing=False` skips that work. Rows a model already has beyond the
tokenizer (Qwen2.5 pads its 151,665 tokens to 152,064 rows) are reused before the matrix grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def embeddings_tied(model: Any) -> bool:
    out = model.get_output_embeddings()
    if out is None:
        return True
    return bool(out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr())


def extend_embeddings(
    model: Any, new_ids: Sequence[int], pieces: Sequence[Sequence[int]], *, pad_to_multiple_of: int | None
) -> dict[str, Any]:
    """Make room for `new_ids` and set each row to the mean of its `pieces`' rows; return what was done."""
    import torch

    if len(new_ids) != len(pieces):
        raise ValueError(f"{len(new_ids)} new ids but {len(pieces)} piece lists")
    rows_before = int(model.get_input_embeddings().weight.shape[0])
    tied = embeddings_tied(model)
    needed = max(new_ids) + 1 if new_ids else rows_before
    if needed > rows_before:
        model.resize_token_embeddings(needed, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    emb = model.get_input_embeddings().weight
    out_layer = None if tied else model.get_output_embeddings()
    index = torch.tensor(list(new_ids), dtype=torch.long)
    with torch.no_grad():
        for target, source in ((emb, emb), *(((out_layer.weight, out_layer.weight),) if out_layer is not None else ())):
            means = torch.stack([source[list(p)].float().mean(0) for p in pieces]).to(target.dtype)
            target.index_copy_(0, index.to(target.device), means.to(target.device))
        bias = getattr(out_layer, "bias", None) if out_layer is not None else None
        if bias is not None:
            means = torch.stack([bias[list(p)].float().mean() for p in pieces]).to(bias.dtype)
            bias.index_copy_(0, index.to(bias.device), means.to(bias.device))
    if tied != embeddings_tied(model):
        raise RuntimeError("resizing the embeddings changed whether input and output embeddings are tied")
    return {
        "rows_before": rows_before,
        "rows_after": int(model.get_input_embeddings().weight.shape[0]),
        "tied_embeddings": tied,
    }
