"""Adapter routing: which questions a trained adapter answers (its territory), in English and Chinese."""

from __future__ import annotations

from dilm.learning.routing import Router, overlap
from dilm.memory.embed import shared_embedder
from dilm.text import content_terms

THRESHOLD = 0.55  # Training.routing's default


def test_a_longer_chinese_paraphrase_is_in_the_territory_and_other_topics_are_not():
    router = Router(["鹤岭酒店的前台电话是多少？", "Who manages the Pellworth ferry?"], shared_embedder())
    assert router.similarity("请问鹤岭酒店前台的联系电话号码是什么？") >= THRESHOLD
    assert router.similarity("Who is the manager of the Pellworth ferry?") >= THRESHOLD
    for unrelated in ("长城有多长？", "今天适合去公园散步吗？", "What is the capital of Peru?"):
        assert router.similarity(unrelated) < THRESHOLD


def test_overlap_needs_two_shared_terms():
    trained = content_terms("鹤岭酒店的前台电话是多少？")
    assert overlap(content_terms("鹤岭酒店前台的联系电话号码是什么？"), trained) >= THRESHOLD
    one = content_terms("电话")  # one shared term: the plain share, not min-normalised
    assert overlap(one | {"x1", "x2"}, trained) < THRESHOLD
