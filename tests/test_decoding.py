"""Each decoding strategy on the real embedded model."""

from __future__ import annotations

import pytest

from dilm.config import Decoding
from dilm.errors import InvalidInputError

MSGS = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write one sentence about the sea."},
]


def test_greedy_is_deterministic(backend):
    d = Decoding(max_new_tokens=16)
    a, b = backend.generate(MSGS, d), backend.generate(MSGS, d)
    assert a[0].text and a[0].text == b[0].text
    assert a[0].mean_logprob is not None and a[0].mean_logprob <= 0


def test_sampling_with_seed_is_reproducible_and_seeds_differ(backend):
    d = Decoding(strategy="sample", temperature=1.3, top_k=0, top_p=1.0, max_new_tokens=16, seed=7)
    first, again = backend.generate(MSGS, d)[0].text, backend.generate(MSGS, d)[0].text
    assert first == again
    others = {backend.generate(MSGS, d.merged({"seed": s}))[0].text for s in (1, 2, 3)}
    assert len(others | {first}) > 1


def test_top_k_one_sampling_equals_greedy(backend):
    greedy = backend.generate(MSGS, Decoding(max_new_tokens=12))[0].text
    top1 = backend.generate(MSGS, Decoding(strategy="sample", top_k=1, max_new_tokens=12, seed=3))[0].text
    assert top1 == greedy


def test_beam_search_returns_n_ranked_candidates(backend):
    d = Decoding(strategy="beam", num_beams=3, n=3, max_new_tokens=12)
    cands = backend.generate(MSGS, d)
    assert len(cands) == 3 and all(c.text for c in cands)
    assert len({c.text for c in cands}) == 3  # distinct beams
    scores = [c.mean_logprob for c in cands]
    assert all(s is not None for s in scores)


def test_sampling_differs_from_beam(backend):
    beam = backend.generate(MSGS, Decoding(strategy="beam", num_beams=4, max_new_tokens=16))[0].text
    samples = backend.generate(
        MSGS, Decoding(strategy="sample", temperature=1.5, top_k=0, top_p=1.0, n=3, max_new_tokens=16, seed=11)
    )
    assert len(samples) == 3
    assert any(s.text != beam for s in samples)


def test_max_new_tokens_and_finish_reason(backend):
    c = backend.generate(MSGS, Decoding(max_new_tokens=3))[0]
    assert c.completion_tokens == 3 and c.finish_reason == "length"


def test_stop_string_cuts_the_answer(backend):
    full = backend.generate(MSGS, Decoding(max_new_tokens=16))[0].text
    words = full.split()
    assert len(words) > 3
    stop = " " + words[2]
    cut = backend.generate(MSGS, Decoding(max_new_tokens=16, stop=[stop]))[0]
    assert stop not in cut.text and full.startswith(cut.text)
    assert cut.finish_reason == "stop"


def test_repetition_penalty_changes_long_output(backend):
    msgs = [{"role": "user", "content": "List the numbers from one to twenty in words."}]
    plain = backend.generate(msgs, Decoding(max_new_tokens=40))[0].text
    penal = backend.generate(msgs, Decoding(max_new_tokens=40, repetition_penalty=1.8))[0].text
    assert plain != penal


@pytest.mark.parametrize(
    "bad",
    [
        {"strategy": "greedy", "n": 2},
        {"strategy": "beam", "num_beams": 2, "n": 3},
        {"temperature": 0},
        {"top_p": 1.5},
        {"strategy": "nucleus"},
        {"max_new_tokens": 0},
    ],
)
def test_invalid_decoding_is_a_clear_error(bad):
    with pytest.raises(InvalidInputError, match="invalid decoding settings"):
        Decoding().merged(bad)
