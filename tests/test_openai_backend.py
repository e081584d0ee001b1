"""The openai backend against a real local OpenAI-compatible HTTP server that serves the embedded model."""

from __future__ import annotations

import json
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from dilm import Assistant
from dilm.config import Decoding
from dilm.errors import BackendUnavailableError
from dilm.models.openai import OpenAIBackend
from tests.serving import free_port, serving
from tests.waiting import HANG_S


def make_app(backend) -> FastAPI:
    """A minimal OpenAI-compatible peer (a stand-in for vLLM / llama.cpp server) over the real model."""
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        app.state.requests.append(body)
        strategy = "greedy" if body.get("temperature", 1.0) == 0 else "sample"
        d = Decoding(
            strategy="beam" if body.get("use_beam_search") else strategy,
            num_beams=body.get("best_of") or 4,
            max_new_tokens=body.get("max_tokens", 32),
            n=body.get("n", 1),
            stop=body.get("stop") or [],
            seed=body.get("seed"),
            temperature=body.get("temperature") or 0.7,
        )
        if not body.get("stream"):
            cands = backend.generate(body["messages"], d)
            return {
                "id": "cmpl-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
                    for i, c in enumerate(cands)
                ],
                "usage": {
                    "prompt_tokens": 1,
                    "completion_tokens": sum(c.completion_tokens for c in cands),
                    "total_tokens": 1,
                },
            }
        deltas: list[str] = []
        cand = backend.generate(body["messages"], d, on_text=deltas.append)[0]

        def events():
            for piece in deltas:
                chunk = {
                    "id": "cmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            end = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": cand.finish_reason}],
            }
            yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def server(backend):
    app = make_app(backend)
    with serving(app) as url:
        yield f"{url}/v1", app


MSGS = [{"role": "user", "content": "What is the capital of France?"}]


def test_generate_matches_the_local_model(server, backend):
    url, app = server
    remote = OpenAIBackend(url, "smollm2", max_retries=0, timeout=HANG_S)
    d = Decoding(max_new_tokens=12)
    assert remote.generate(MSGS, d)[0].text == backend.generate(MSGS, d)[0].text
    assert app.state.requests[-1]["temperature"] == 0.0 and app.state.requests[-1]["max_tokens"] == 12


def test_streaming_and_n_candidates(server):
    url, app = server
    remote = OpenAIBackend(url, "smollm2", max_retries=0, timeout=HANG_S)
    parts: list[str] = []
    cand = remote.generate(MSGS, Decoding(max_new_tokens=12), on_text=parts.append)[0]
    # the words are not checked: llama.cpp does not promise bit-identical logits across runs (batch shapes, cache
    # state), and a 135M model's greedy pick flips on tiny differences
    assert len(parts) > 1 and "".join(parts).strip() == cand.text and cand.completion_tokens > 1
    cands = remote.generate(MSGS, Decoding(strategy="sample", n=2, seed=1, max_new_tokens=8))
    assert len(cands) == 2 and app.state.requests[-1]["n"] == 2 and app.state.requests[-1]["top_k"] == 50


def test_assistant_over_the_openai_backend(server, tmp_path):
    url, _ = server
    with Assistant.open(
        tmp_path, backend="openai", openai_base_url=url, model="smollm2", request_timeout=HANG_S
    ) as bot:
        r = bot.chat("What is the capital of France?", user="alice", max_new_tokens=12)
        assert "Paris" in r.text and r.model == "smollm2"
        r2 = bot.chat("And of Italy?", user="alice", session=r.session_id, max_new_tokens=12)
        assert r2.prompt_tokens > r.prompt_tokens
        stream = bot.stream("Say hi.", user="alice", max_new_tokens=8)
        assert "".join(stream).strip() == stream.reply.text


def test_server_down_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with Assistant.open(tmp_path, backend="openai", openai_base_url=url, max_retries=0, request_timeout=5) as bot:
        with pytest.raises(BackendUnavailableError, match="is it running"):
            bot.chat("hello")
        with pytest.raises(BackendUnavailableError):
            list(bot.stream("hello"))
        assert bot.history() == []
