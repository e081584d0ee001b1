"""OpenAI's whole chat-completions protocol against a real `dilm serve` (the official `openai` client, JSON and
streaming): roles, content parts, pictures, tools, response formats, finish reasons, errors before a stream,
and the compatibility table in docs/http.md walked field by field."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image, ImageDraw, ImageFont

from dilm import Assistant
from dilm.config import Decoding
from dilm.models.openai import OpenAIBackend
from dilm.server.app import create_app
from dilm.tools import Tools, offered, parse_calls, plain
from tests.serving import serving
from tests.waiting import HANG_S, http

DOCS = Path(__file__).resolve().parents[1] / "docs" / "http.md"
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # scripts/setup-browser.sh installs it
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Recording:
    """The real backend, with the prompts it was given kept (what the model saw)."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.prompts = backend, []  # type: list[list[dict[str, Any]]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, messages, decoding, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.prompts.append(messages)
        return self.backend.generate(messages, decoding, *args, **kwargs)


@pytest.fixture
def served(data_dir, backend):
    recording = Recording(backend)
    with (
        Assistant.open(data_dir, backend=recording, decoding={"max_new_tokens": 24}) as bot,
        serving(create_app(bot, local=True)) as url,
    ):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=HANG_S, max_retries=0)
        yield client, bot, recording, url


def picture(lines: list[str], size: int = 30) -> bytes:
    """A PNG with these lines of black text (Chinese too: a CJK font)."""
    font = ImageFont.truetype(str(CJK_FONT), size) if CJK_FONT.exists() else ImageFont.load_default(size)
    img = Image.new("RGB", (720, 40 + (size + 24) * max(len(lines), 1)), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((24, 20 + (size + 24) * i), line, fill="black", font=font)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def jpeg_cut_short() -> bytes:
    """A JPEG missing its second half: Pillow's verify() passes it, decoding does not."""
    out = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(out, "JPEG")
    return out.getvalue()[: len(out.getvalue()) // 2]


def ask(client: openai.OpenAI, content: Any, **kw: Any) -> Any:
    return client.chat.completions.create(model="dilm", messages=[{"role": "user", "content": content}], **kw)


# -- roles and content parts -------------------------------------------------------------------------
def test_developer_role_and_text_parts_reach_the_model(served):
    client, _, recording, _ = served
    r = client.chat.completions.create(
        model="dilm",
        messages=[
            {"role": "developer", "content": "Reply in the voice of a ship's captain."},
            {"role": "user", "content": [{"type": "text", "text": "Name a sea."}, {"type": "text", "text": "One."}]},
        ],
    )
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    system, current = recording.prompts[-1][0], recording.prompts[-1][-1]
    assert "ship's captain" in system["content"] and system["role"] == "system"
    assert "Name a sea.\nOne." in current["content"]


def test_the_clients_history_is_the_conversation_without_a_session(served):
    client, _, recording, _ = served
    client.chat.completions.create(
        model="dilm",
        messages=[
            {"role": "user", "content": "My locker code is 4417."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "What did I just tell you?"},
        ],
    )
    prompt = recording.prompts[-1]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"] == "My locker code is 4417."


def test_a_cut_answer_finishes_with_length_in_json_and_stream(served):
    client, *_ = served
    long = "Write a long poem about the ocean at night."
    assert ask(client, long, max_tokens=4).choices[0].finish_reason == "length"
    chunks = [c for c in ask(client, long, max_tokens=4, stream=True) if c.choices]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert ask(client, "Say hi.", max_tokens=200).choices[0].finish_reason == "stop"


def test_a_prompt_over_the_context_window_is_a_400_before_the_stream(served):
    client, bot, *_ = served
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "ox " * 9000, stream=True)
    assert "tokens" in e.value.message
    assert bot.sessions.list("default") == []  # nothing logged


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"logit_bias": {"1234": 5}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"logprobs": True, "tools": [WEATHER]}, "logprobs"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"tools": [WEATHER], "n": 2}, "n"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": "get_weather"}, "tools": [WEATHER]}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format"),
    ],
)
def test_what_dilm_cannot_do_is_a_400_naming_the_field(served, extra, field):
    client, *_ = served
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "hi", **extra)
    assert e.value.message.startswith(f"Error code: 400 - {field}") or field in e.value.message


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "audio input"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "file input"),
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, "does not fetch"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}, "not an image"),
        ({"type": "image_url", "image_url": {"url": data_uri(jpeg_cut_short())}}, "not an image"),
    ],
)
def test_parts_dilm_cannot_take_are_a_400_that_says_why(served, part, words):
    client, bot, *_ = served
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, [{"type": "text", "text": "look"}, part])
    assert words in e.value.message
    assert bot.sessions.list("default") == []


# -- pictures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "question", "wanted"),
    [
        (["Harbour Fuel Station", "TOTAL 58.40"], "What is the total on this receipt?", "58.40"),
        (["青松超市", "合计 126.50 元"], "这张小票合计多少钱？", "126.50"),
    ],
)
def test_a_pictures_text_is_read_and_given_to_the_model_as_data(served, lines, question, wanted):
    client, bot, recording, _ = served
    r = ask(
        client,
        [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": data_uri(picture(lines))}}],
    )
    prompt = recording.prompts[-1][-1]["content"]
    assert "OCR" in prompt and wanted in prompt and question in prompt
    logged = bot.sessions.messages(r.dilm["session_id"])[0]
    (seen,) = logged.meta["images"]
    assert wanted in seen["text"] and seen["media_type"] == "image/png"
    assert bot.pictures.find("default", seen["sha256"]) is not None


def test_a_picture_without_text_gets_an_honest_answer_and_is_forgotten_with_the_user(served):
    client, bot, recording, url = served
    out = io.BytesIO()  # uncompressed: over the 1 MiB body limit of other endpoints, within the chat one
    Image.new("RGB", (900, 600), "white").save(out, "PNG", compress_level=0)
    blank = out.getvalue()
    assert len(data_uri(blank)) > 1 << 20
    r = ask(client, [{"type": "image_url", "image_url": {"url": data_uri(blank)}}], user="wren")
    assert "can't see images" in r.choices[0].message.content and not recording.prompts  # nothing generated
    exported = http.get(f"{url}/v1/users/wren/export").json()
    assert [base64.b64decode(i["data"]) for i in exported["images"]] == [blank]
    assert httpx.delete(f"{url}/v1/users/wren", timeout=HANG_S).json()["deleted"]["images"] == 1
    assert not bot.pictures.folder("wren").exists()


# -- tools ----------------------------------------------------------------------------------------------
def test_a_required_tool_call_and_its_result_json_and_streamed(served):
    client, bot, recording, _ = served
    question = {"role": "user", "content": "What's the weather in Tórshavn right now?"}
    r = client.chat.completions.create(
        model="dilm", messages=[question], tools=[WEATHER], tool_choice="required", max_tokens=60
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
    chunks = list(
        client.chat.completions.create(
            model="dilm", messages=[question], tools=[WEATHER], tool_choice="required", stream=True, max_tokens=60
        )
    )
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas and deltas[0][0].function.name == "get_weather" and deltas[0][0].id
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    answered = [
        question,
        choice.message.model_dump(exclude_none=True),
        # words that would teach a fact, said by the user: from a tool they teach nothing
        {"role": "tool", "tool_call_id": call.id, "content": "Sleet, 3 °C. I live in Bergen and my name is Tove."},
    ]
    after = client.chat.completions.create(model="dilm", messages=answered, tools=[WEATHER])
    assert after.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert any("Sleet, 3 °C" in str(m.get("content")) for m in recording.prompts[-1])  # the result reached it
    assert bot.facts.current(user="default") == []  # a tool's words are not the user's: nothing learned
    logged = bot.sessions.messages(after.dilm["session_id"])
    assert logged[0].content.startswith("[tool result]")


def test_a_named_tool_choice_calls_that_function(served):
    client, *_ = served
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    r = client.chat.completions.create(
        model="dilm",
        messages=[{"role": "user", "content": "What's the weather in Reykjavík?"}],
        tools=[WEATHER, clock],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
    )
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_time"]


def test_history_with_tool_calls_and_null_content_is_accepted(served):
    client, *_ = served
    r = client.chat.completions.create(
        model="dilm",
        messages=[
            {"role": "user", "content": "Weather in Lima?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Lima"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "Fog, 17 °C"},
            {"role": "assistant", "content": "It is foggy and 17 °C in Lima."},
            {"role": "user", "content": "Thanks. Is that warm?"},
        ],
        tools=[WEATHER],
    )
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_logprobs_describe_the_answer_in_json_and_stream(served):
    client, *_ = served
    r = ask(client, "Name a colour.", logprobs=True, top_logprobs=3, max_tokens=6)
    tokens = r.choices[0].logprobs.content
    assert "".join(t.token for t in tokens).strip() == r.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in tokens)
    chunks = [c for c in ask(client, "Name a colour.", logprobs=True, max_tokens=6, stream=True) if c.choices]
    streamed = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in tokens] and streamed[0].top_logprobs == []
    assert ask(client, "Name a colour.", max_tokens=6).choices[0].logprobs is None


def test_json_response_format_is_constrained(served):
    client, *_ = served
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = ask(
        client,
        "Which city is the capital of Peru? Answer in JSON.",
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}},
    )
    assert isinstance(json.loads(r.choices[0].message.content)["city"], str)


def test_the_openai_backend_passes_tools_and_pictures_to_a_real_peer(served):
    """dilm's own server is the OpenAI-compatible peer: a call comes back as tool_calls, and a picture sent
    through the backend is read by the peer."""
    _, peer_bot, recording, url = served
    remote = OpenAIBackend(f"{url}/v1", "dilm", timeout=HANG_S, max_retries=0)
    tools = offered([WEATHER], "required")
    (c,) = remote.generate(
        [{"role": "user", "content": "Weather in Hobart?"}], Decoding(max_new_tokens=80), tools=tools
    )
    assert c.finish_reason == "tool_calls" and c.tool_calls[0].name == "get_weather"
    content = [
        {"type": "text", "text": "What is written here?"},
        {"type": "image_url", "image_url": {"url": data_uri(picture(["GATE 17B"]))}},
    ]
    remote.generate([{"role": "user", "content": content}], Decoding(max_new_tokens=16))
    assert "17B" in recording.prompts[-1][-1]["content"]


# -- the compatibility table ----------------------------------------------------------------------------
SAMPLES: dict[str, dict[str, Any]] = {  # a request setting each field of the table
    "model": {"model": "anything"},
    "user": {"user": "ines"},
    "temperature": {"temperature": 0.7},
    "top_p": {"top_p": 0.9},
    "seed": {"seed": -3},
    "stop": {"stop": ["\n\n"]},
    "n": {"n": 2},
    "max_tokens": {"max_tokens": 5},
    "max_completion_tokens": {"max_completion_tokens": 5},
    "stream": {"stream": True},
    "stream_options": {"stream": True, "stream_options": {"include_usage": True}},
    "tools": {"tools": [WEATHER]},
    "tool_choice": {"tools": [WEATHER], "tool_choice": "none"},
    "parallel_tool_calls": {"tools": [WEATHER], "parallel_tool_calls": False},
    "functions": {"functions": [WEATHER["function"]], "function_call": "none"},
    "function_call": {"functions": [WEATHER["function"]], "function_call": "auto"},
    "response_format": {"response_format": {"type": "json_object"}},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "presence_penalty": {"presence_penalty": 0.5},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"logprobs": True, "top_logprobs": 2},
    "logit_bias": {"logit_bias": {"42": 1}},
    "modalities": {"modalities": ["text"]},
    "audio": {"audio": {"voice": "alloy", "format": "wav"}},
    "web_search_options": {"web_search_options": {}},
    "prediction": {"prediction": {"type": "content", "content": "x"}},
    "reasoning_effort": {"reasoning_effort": "low"},
    "verbosity": {"verbosity": "low"},
    "metadata": {"metadata": {"team": "tests"}},
    "store": {"store": True},
    "service_tier": {"service_tier": "auto"},
    "prompt_cache_key": {"prompt_cache_key": "k1"},
    "safety_identifier": {"safety_identifier": "hash-1"},
    "top_k": {"top_k": 20},
    "repetition_penalty": {"repetition_penalty": 1.1},
}


def table() -> list[tuple[str, str]]:
    """(field, what dilm does) for each top-level field in docs/http.md's compatibility table."""
    text = DOCS.read_text(encoding="utf-8").split("## Chat completions: OpenAI compatibility", 1)[1]
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\| (`[^|]+) \| (supported|ignored|refused|dilm extension)", line)
        if m and "[]" not in m.group(1):
            rows += [(name, m.group(2)) for name in re.findall(r"`(\w+)`", m.group(1))]
    return rows


def test_the_table_names_every_field_of_the_request_model():
    from dilm.server.openai_chat import ChatRequest

    assert {name for name, _ in table()} == set(ChatRequest.model_fields)


@pytest.mark.parametrize(("field", "verdict"), [r for r in table() if r[0] not in ("messages", "session_id")])
def test_each_field_does_what_the_table_says(served, field, verdict):
    client, *_ = served
    body = {"model": "dilm", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, **SAMPLES[field]}
    r = http.post(f"{client.base_url}chat/completions", json=body)
    assert r.status_code == (400 if verdict == "refused" else 200), r.text
    if verdict == "refused":
        assert field.removeprefix("top_") in r.json()["error"]["message"]


# -- no model: the tool-call reader ---------------------------------------------------------------------
def test_calls_are_read_in_every_shape_and_only_for_offered_tools():
    tools = Tools([WEATHER])
    shapes = [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oulu"}}\n</tool_call>',
        '```json\n{"name": "get_weather", "arguments": {"city": "Oulu"}}\n```',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Oulu\\"}"}',
    ]
    for text in shapes:
        (call,) = parse_calls(text, tools)
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oulu"}
    assert parse_calls('{"name": "delete_everything", "arguments": {}}', tools) == []
    assert parse_calls("It is sunny in Oulu.", tools) == []
    assert parse_calls('{"city": "Oulu"}', tools) == []


def test_templates_without_tools_get_calls_and_results_as_plain_turns():
    messages = [
        {"role": "user", "content": "天气？"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "成都"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "小雨"},
    ]
    flat = plain(messages)
    assert [m["role"] for m in flat] == ["user", "assistant", "user"]
    assert json.loads(flat[1]["content"]) == {"name": "get_weather", "arguments": {"city": "成都"}}
    assert flat[2]["content"] == "[get_weather returned] 小雨"


@pytest.mark.parametrize(
    ("lines", "question", "correction"),
    [
        (["Gate 9"], "Which gate does the sign show?", "No, that sign was changed: boarding is at gate 6."),
        (["今日特价 鲈鱼"], "图片里的特价菜是什么？", "不对，今天的特价换成了草鱼。"),
    ],
)
def test_a_correction_of_what_a_picture_shows_is_a_memory_linked_to_it(bot, lines, question, correction):
    png = picture(lines)
    r = bot.chat(question, images=[png])
    bot.feedback(r.id, correction=correction)
    (memory,) = bot.memories.list(user="default")
    (sha,) = memory.metadata["images"]
    assert bot.pictures.find("default", sha).read_bytes() == png
