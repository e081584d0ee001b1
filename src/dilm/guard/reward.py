"""Moved: inference to `dilm.guard.rerank`, training to `dilm.learning.reward`. Kept only until assistant.py
uses `dilm.guard.rerank.Reranker`; then this file goes."""

from dilm.guard.rerank import REWARD_SCOPE, Pair, RewardModel

__all__ = ["REWARD_SCOPE", "Pair", "RewardModel"]
