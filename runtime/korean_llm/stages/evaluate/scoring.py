"""Model scoring used by the evaluate stage: perplexity, multiple choice by log-likelihood, generation, Hangul share.

Everything here takes a loaded causal LM and its tokenizer and returns plain numbers, so the same
functions score the candidate and the baseline. Log-likelihoods are computed in float32 from one
forward pass per batch of right-padded sequences (padding after the tokens cannot change them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from korean_llm.data import with_system_prompt


def continuation_logprobs(
    model: Any, pairs: Sequence[tuple[list[int], list[int]]], *, batch_size: int, max_length: int, pad_id: int
) -> list[tuple[float, int]]:
    """For each (context ids, continuation ids): sum of log p(continuation | context) and the tokens scored.

    A sequence longer than `max_length` loses tokens from the left of its context first; the very first
    token of a sequence has no prediction, so a continuation with no context scores one token fewer.
    """
    import torch

    device = next(model.parameters()).device
    results: list[tuple[float, int]] = []
    for start in range(0, len(pairs), batch_size):
        seqs = []
        for ctx, cont in pairs[start : start + batch_size]:
            ids = (list(ctx) + list(cont))[-max_length:]
            seqs.append((ids, min(len(cont), len(ids) - 1)))
        width = max(len(ids) for ids, _ in seqs)
        input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (ids, _) in enumerate(seqs):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[i, : len(ids)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        for i, (ids, n) in enumerate(seqs):
            if n <= 0:
                results.append((0.0, 0))
                continue
            end = len(ids)
            # Only the scored positions go through log_softmax: the full (batch, length, vocab) tensor is large.
            logp = torch.log_softmax(logits[i, end - n - 1 : end - 1].float(), dim=-1)
            targets = input_ids[i, end - n : end].to(logp.device)
            results.append((float(logp.gather(-1, targets[:, None]).sum()), n))
    return results


@dataclass
class Perplexity:
    perplexity: float
    tokens: int
    documents: int
    # Characters and UTF-8 bytes of the text whose tokens were scored: bits per character / byte compare models
    # with different tokenizers (an extended Korean vocabulary scores fewer, longer tokens on the same text).
    characters: int = 0
    bytes: int = 0
    bits_per_character: float | None = None
    bits_per_byte: float | None = None
    # Tokens the given texts hold beyond the first (predictable) one of each: more than `tokens` when
    # `max_tokens` cut the scoring short.
    tokens_available: int = 0
    documents_available: int = 0


def _token_spans(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    """Token ids of `text` and, for fast tokenizers, each token's character span in `text`."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, verbose=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], None


def _scored_text(
    tokenizer: Any, text: str, ids: list[int], spans: list[tuple[int, int]] | None, lo: int, hi: int
) -> str:
    """The text covered by tokens lo..hi-1 (by their character spans; a byte-level token holding part of a
    character is given the whole character, so consecutive windows never count a character twice)."""
    if spans is not None:
        start = spans[lo - 1][1] if lo > 0 else spans[lo][0]
        return text[start : spans[hi - 1][1]]
    return tokenizer.decode(ids[lo:hi])


def perplexity(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int, max_tokens: int, batch_size: int
) -> Perplexity:
    """Token-level perplexity over non-overlapping windows of `max_length` tokens, up to `max_tokens` scored tokens."""
    windows: list[tuple[list[int], list[int]]] = []
    budget = max_tokens
    used_docs = chars = nbytes = available = available_docs = 0
    for text in texts:
        ids, spans = _token_spans(tokenizer, text)  # long texts are windowed
        if len(ids) < 2:
            continue
        available += len(ids) - 1
        available_docs += 1
        if budget <= 0:
            continue
        used_docs += 1
        for pos in range(0, len(ids), max_length):
            window = ids[pos : pos + max_length][: budget + 1]
            if len(window) < 2:
                break
            windows.append((window[:1], window[1:]))
            scored = _scored_text(tokenizer, text, ids, spans, pos + 1, pos + len(window))
            chars += len(scored)
            nbytes += len(scored.encode("utf-8"))
            budget -= len(window) - 1
            if budget <= 0:
                break
    if not windows:
        raise ValueError("no text with at least two tokens to score")
    logprobs = continuation_logprobs(
        model, windows, batch_size=batch_size, max_length=max_length, pad_id=_pad_id(tokenizer)
    )
    total = sum(lp for lp, _ in logprobs)
    count = sum(n for _, n in logprobs)
    bits = -total / math.log(2)
    return Perplexity(
        math.exp(-total / count),
        count,
        used_docs,
        characters=chars,
        bytes=nbytes,
        bits_per_character=bits / chars if chars else None,
        bits_per_byte=bits / nbytes if nbytes else None,
        tokens_available=available,
        documents_available=available_docs,
    )


def mc_prompt(item: dict[str, Any]) -> str:
    """The text a choice is scored after: optional context, the question, then the answer cue."""
    context = f"{item['context'].strip()}\n" if item.get("context") else ""
    return f"{context}질문: {item['question'].strip()}\n답:"


@dataclass
class ChoiceScores:
    """Accuracy three ways, as lm-evaluation-harness v0.4.12 scores `multiple_choice` tasks.

    lm_eval/api/task.py, ConfigurableTask.process_results: `pred = argmax(lls)` (acc),
    `pred_norm = argmax(lls / completion_len)` with `completion_len = len(choice)` in characters
    (acc_norm), and `pred_byte = argmax(lls / byte_length)` with `len(choice.encode("utf-8"))`
    (acc_bytes). For Korean the two normalisations differ: a Hangul syllable is one character but
    three UTF-8 bytes, so a choice mixing Hangul with digits or Latin letters is weighed differently.
    """

    accuracy: float
    accuracy_norm: float  # log-likelihood / characters of the choice (lm-eval acc_norm)
    items: int
    predictions: list[int]
    accuracy_bytes: float = 0.0  # log-likelihood / UTF-8 bytes of the choice (lm-eval acc_bytes)
    predictions_norm: list[int] | None = None
    predictions_bytes: list[int] | None = None
    loglikelihoods: list[list[float]] | None = None


def multiple_choice(
    model: Any, tokenizer: Any, items: Sequence[dict[str, Any]], *, max_length: int, batch_size: int
) -> ChoiceScores:
    """Accuracy of picking the choice with the highest log-likelihood after `mc_prompt(item)`."""
    pairs: list[tuple[list[int], list[int]]] = []
    for item in items:
        ctx = tokenizer(mc_prompt(item), add_special_tokens=False)["input_ids"]
        for choice in item["choices"]:
            pairs.append((ctx, tokenizer(" " + choice, add_special_tokens=False)["input_ids"]))
    scored = continuation_logprobs(
        model, pairs, batch_size=batch_size, max_length=max_length, pad_id=_pad_id(tokenizer)
    )
    correct = correct_norm = correct_bytes = 0
    predictions, predictions_norm, predictions_bytes, all_lls = [], [], [], []
    pos = 0
    for item in items:
        n = len(item["choices"])
        lls = [lp for lp, _ in scored[pos : pos + n]]
        norms = [lp / max(len(c), 1) for lp, c in zip(lls, item["choices"], strict=True)]
        per_byte = [lp / max(len(c.encode("utf-8")), 1) for lp, c in zip(lls, item["choices"], strict=True)]
        pos += n
        pred = max(range(n), key=lambda k: lls[k])
        pred_norm = max(range(n), key=lambda k: norms[k])
        pred_bytes = max(range(n), key=lambda k: per_byte[k])
        predictions.append(pred)
        predictions_norm.append(pred_norm)
        predictions_bytes.append(pred_bytes)
        all_lls.append(lls)
        correct += pred == item["answer"]
        correct_norm += pred_norm == item["answer"]
        correct_bytes += pred_bytes == item["answer"]
    n_items = len(items)
    return ChoiceScores(
        correct / n_items,
        correct_norm / n_items,
        n_items,
        predictions,
        correct_bytes / n_items,
        predictions_norm,
        predictions_bytes,
        all_lls,
    )


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    system_prompt: str | None,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy answers to `prompts`, through the tokenizer's chat template when it has one."""
    import torch

    device = next(model.parameters()).device
    texts = []
    for prompt in prompts:
        if getattr(tokenizer, "chat_template", None):
            messages = with_system_prompt([{"role": "user", "content": prompt}], system_prompt)
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        else:
            texts.append(prompt)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the last position of every row
    answers: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=_pad_id(tokenizer),
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            answers.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return [a.strip() for a in answers]


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad)
