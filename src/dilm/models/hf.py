"""Hugging Face libraries, quietly: shared by the trainers (learning) and the reward model (guard)."""

from __future__ import annotations


def quiet() -> None:
    """Library chatter (dataset progress bars, info logs) off: a job reports through `progress` and TensorBoard."""
    # heavy libraries imported on use: opening an assistant must not pay for them
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
