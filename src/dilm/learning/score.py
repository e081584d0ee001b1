"""Teacher-forced scoring: how a model rates given answers, in one forward pass per batch (no generation).

`agreement` is the share of answer tokens that are the model's own greedy choice at that position — the
token-level locality measure of the knowledge-editing literature (EasyEdit, WISE): 1.0 means greedy decoding
reproduces the answer exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class Scored:
    nll: float  # mean negative log-likelihood per answer token
    logp: float  # summed log-probability of the answer
    agreement: float  # share of answer tokens that are the greedy choice
    tokens: int


def encode(
    tokenizer: Any, prompt: Chat, answer: str, max_length: int = 512, ends: bool = True
) -> tuple[list[int], int]:
    """Token ids of prompt + answer and where the answer starts; `ends`: the end-of-turn is part of the answer
    (False for answers cut at a token limit)."""
    head = _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))
    if not ends:
        full = head + _ids(tokenizer(answer, add_special_tokens=False))
        return full[: max(max_length, len(head) + 1)], len(head)
    full = _ids(tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=True))
    if full[: len(head)] != head:  # templates that rewrite earlier turns: fall back to concatenation
        full = head + _ids(tokenizer(answer, add_special_tokens=False)) + [tokenizer.eos_token_id]
    full = full[: max(max_length, len(head) + 1)]
    return full, len(head)


def _ids(x: Any) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "input_ids"):
        x = x["input_ids"]
    return list(x)


def score(
    model: Any, tokenizer: Any, pairs: list[tuple[Chat, str]], batch: int = 8, max_length: int = 512, ends: bool = True
) -> list[Scored]:
    """Score each (prompt, answer) pair under `model` as it is now (adapter on or off is the caller's choice)."""
    import torch

    out: list[Scored] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(pairs), batch):
            encoded = [encode(tokenizer, p, a, max_length, ends) for p, a in pairs[i : i + batch]]
            width = max(len(ids) for ids, _ in encoded)
            ids = torch.full((len(encoded), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, (seq, _) in enumerate(encoded):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            for row, (seq, start) in enumerate(encoded):
                target = ids[row, start : len(seq)]
                lp = logprobs[row, start - 1 : len(seq) - 1]
                token_lp = lp.gather(1, target[:, None]).squeeze(1)
                agree = (lp.argmax(-1) == target).float()
                n = max(int(target.numel()), 1)
                out.append(Scored(float(-token_lp.mean()), float(token_lp.sum()), float(agree.mean()), n))
    finally:
        model.train(was_training)
    return out


def greedy_answers(
    model: Any, tokenizer: Any, prompts: list[Chat], max_new_tokens: int = 32, batch: int = 16
) -> list[str]:
    """The model's greedy answers, batched (left padding)."""
    import torch

    answers: list[str] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(prompts), batch):
            enc = tokenizer.apply_chat_template(
                prompts[i : i + batch], add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
            )
            with torch.no_grad():
                seqs = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            texts = tokenizer.batch_decode(seqs[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            answers += [t.strip() for t in texts]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
