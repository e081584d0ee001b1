"""Local backend: transformers + torch on the CPU (or a GPU when there is one)."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dilm.config import Decoding
from dilm.errors import BackendError, GenerationCancelled, InvalidInputError, ModelNotFoundError
from dilm.models.base import AdapterRef, ChatMessage, OnText, StopTrimmer, cut_at_stop
from dilm.types import Candidate

if TYPE_CHECKING:
    from dilm.tools import Tools

log = logging.getLogger(__name__)


class LocalBackend:
    """A Hugging Face causal LM loaded from a folder; one generation at a time (a lock guards the model)."""

    def __init__(self, folder: Path, name: str, context_window: int | None = None, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if threads:
            torch.set_num_threads(threads)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # loading takes well under a second from safetensors
        # transformers/peft/torch objects are Any: a PeftModel replaces the model once an adapter loads.
        self.tokenizer: Any
        self.model: Any
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ModelNotFoundError(f"cannot load the model in {folder}: {e}") from None
        finally:
            hf_logging.enable_progress_bar()
        self.model.eval()
        self.model_name = name
        self.folder = folder
        limit = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.context_window = min(limit, context_window) if context_window else limit
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._lock = threading.Lock()
        self._torch: Any = torch
        self._adapters: list[str] = []  # loaded LoRA adapters, least recently used first
        self.fixed = False  # True: the model is used as it is (e.g. a model being trained), adapters ignored

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, name: str, folder: Path) -> LocalBackend:
        """Wrap a model already in memory (e.g. one being trained) without loading anything."""
        import torch

        self = cls.__new__(cls)
        self.model, self.tokenizer, self.model_name, self.folder = model, tokenizer, name, folder
        self.context_window = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._lock, self._torch, self._adapters, self.fixed = threading.Lock(), torch, [], True
        return self

    # -- adapters ---------------------------------------------------------------------------------
    MAX_LOADED_ADAPTERS = 8

    def _use_adapter(self, adapter: AdapterRef | None) -> AbstractContextManager[Any]:
        """Context in which the model answers with `adapter` (None: the base weights). Holds the lock."""
        import contextlib

        if self.fixed:
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter() if self._adapters else contextlib.nullcontext()
        # Keyed by folder too: two data dirs served by one process may both have a "v1".
        name = f"{adapter.name}_{hashlib.sha256(str(adapter.folder.resolve()).encode()).hexdigest()[:12]}"
        if name not in self._adapters:
            from peft import PeftModel

            try:
                if not self._adapters:
                    self.model = PeftModel.from_pretrained(self.model, str(adapter.folder), adapter_name=name)
                else:
                    self.model.load_adapter(str(adapter.folder), adapter_name=name)
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise BackendError(f"cannot load adapter {adapter.name} from {adapter.folder}: {e}") from None
            self.model.eval()
            self._adapters.append(name)
            if len(self._adapters) > self.MAX_LOADED_ADAPTERS:
                evicted = self._adapters.pop(0)
                self.model.set_adapter(name)
                self.model.delete_adapter(evicted)
        else:
            self._adapters.remove(name)
            self._adapters.append(name)
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    # -- tokens -----------------------------------------------------------------------------------
    def encode_chat(self, messages: list[ChatMessage]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.encode_chat(messages))

    # -- generation -------------------------------------------------------------------------------
    def generation_kwargs(self, d: Decoding) -> dict[str, object]:
        kw: dict[str, object] = {
            "max_new_tokens": d.max_new_tokens,
            "repetition_penalty": d.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
            "num_return_sequences": d.n,
        }
        if d.strategy == "greedy":
            kw.update(do_sample=False, num_beams=1)
        elif d.strategy == "beam":
            kw.update(do_sample=False, num_beams=d.num_beams, early_stopping=True)
        else:
            kw.update(do_sample=True, num_beams=1, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p)
        if d.stop:
            kw.update(stop_strings=d.stop, tokenizer=self.tokenizer)
        return kw

    def generate(
        self,
        messages: list[ChatMessage],
        decoding: Decoding,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
        adapter: AdapterRef | None = None,
        tools: Tools | None = None,
    ) -> list[Candidate]:
        """See Backend.generate. Tool calling and logprobs are not offered here (InvalidInputError)."""
        if tools is not None or decoding.logprobs is not None:
            raise InvalidInputError('tools and logprobs need runtime "llama.cpp" or an OpenAI-compatible backend')
        torch = self._torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        cancel = cancel or threading.Event()
        stop_on_cancel, logprobs_class = _hooks(torch, cancel)
        prompt = torch.tensor([self.encode_chat(messages)])
        kw = self.generation_kwargs(decoding)
        beam = decoding.strategy == "beam"
        logprobs = None if beam else logprobs_class()
        if logprobs is not None:
            kw["logits_processor"] = LogitsProcessorList([logprobs])
        trimmer = None
        if on_text is not None and decoding.n == 1 and decoding.strategy != "beam":
            trimmer = StopTrimmer(decoding.stop, on_text)
            kw["streamer"] = self._streamer(trimmer)
        with self._lock:
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)
            try:
                with self._use_adapter(adapter), torch.inference_mode():
                    out = self.model.generate(
                        input_ids=prompt,
                        attention_mask=torch.ones_like(prompt),
                        stopping_criteria=StoppingCriteriaList([stop_on_cancel]),
                        output_scores=beam,  # beams need their indices; others use the cheap _LogProbs
                        return_dict_in_generate=True,
                        **kw,
                    )
            except (RuntimeError, ValueError) as e:
                raise BackendError(f"generation failed: {e}") from None
        if cancel.is_set():
            raise GenerationCancelled("generation cancelled")
        scores = logprobs.table(out.sequences) if logprobs is not None else self._beam_scores(out)
        candidates = self._candidates(out.sequences[:, prompt.shape[1] :], scores, decoding)
        if trimmer is not None:
            trimmer.flush()
        elif on_text is not None:
            on_text(candidates[0].text)
        return candidates

    def _streamer(self, trimmer: StopTrimmer) -> Any:
        """A TextStreamer that feeds the decoded answer to `trimmer` as it is produced."""
        from transformers import TextStreamer

        class _Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                trimmer.feed(text)

        return _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

    def _beam_scores(self, out: Any) -> Any:
        try:
            return self.model.compute_transition_scores(
                out.sequences, out.scores, getattr(out, "beam_indices", None), normalize_logits=True
            )
        except (RuntimeError, ValueError, IndexError):  # scores are a nicety, never a failure
            return None

    def _candidates(self, seqs: Any, scores: Any, d: Decoding) -> list[Candidate]:
        torch = self._torch
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        pad = self.tokenizer.pad_token_id
        result = []
        for i, seq in enumerate(seqs.tolist()):
            # Generated tokens run until the first eos; everything after is padding.
            n_tokens = next((j for j, t in enumerate(seq) if t in eos), None)
            ended_by_eos = n_tokens is not None
            n_tokens = len(seq) if n_tokens is None else n_tokens
            while not ended_by_eos and n_tokens and seq[n_tokens - 1] == pad and pad not in eos:
                n_tokens -= 1
            text = self.tokenizer.decode(seq[:n_tokens], skip_special_tokens=True)
            cut = cut_at_stop(text, d.stop)
            hit_limit = not ended_by_eos and cut is None and n_tokens >= d.max_new_tokens
            finish = "length" if hit_limit else "stop"
            # A multi-byte character cut by the token limit decodes to U+FFFD: drop the fragment.
            text = (cut if cut is not None else text).rstrip("\ufffd").strip()
            mean_lp = None
            if scores is not None and n_tokens:
                row = scores[i, :n_tokens]
                row = row[torch.isfinite(row)]
                if row.numel():
                    mean_lp = float(row.mean())
                    mean_lp = None if math.isnan(mean_lp) else mean_lp
            result.append(Candidate(text=text, completion_tokens=n_tokens, finish_reason=finish, mean_logprob=mean_lp))
        return result


def _hooks(torch: Any, cancel: threading.Event) -> tuple[Any, type[Any]]:
    """A stopping criterion that ends generation once `cancel` is set, and the log-probability recorder class."""
    from transformers import LogitsProcessor, StoppingCriteria

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

    class _LogProbs(LogitsProcessor):
        """Log-probability of each chosen token, without keeping every step's full scores."""

        def __init__(self) -> None:
            self.prev: Any = None
            self.steps: list[Any] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.prev is not None:  # input_ids now ends with the token chosen from self.prev
                self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
            self.prev = torch.log_softmax(scores.float(), dim=-1)
            return scores

        def table(self, sequences: Any) -> Any:
            last = [self.prev.gather(1, sequences[:, -1:]).squeeze(1)] if self.prev is not None else []
            return torch.stack(self.steps + last, dim=1) if self.steps or last else None

    return _Cancel(), _LogProbs


def _as_list(x: int | list[int] | None) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
