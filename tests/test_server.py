"""The HTTP API against a real server on a free port: the official `openai` client, feedback, errors."""

from __future__ import annotations

import httpx
import openai
import pytest

from dilm import Assistant
from dilm.server.app import create_app
from tests.serving import serving


@pytest.fixture
def server(data_dir, backend):
    with (
        Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 24}) as bot,
        serving(create_app(bot)) as url,
    ):
        yield url, bot


def test_the_openai_client_works_unchanged_and_feedback_teaches(server):
    url, bot = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    q = "What is the support hotline of Quillmere Robotics?"
    r = client.chat.completions.create(model="dilm", messages=[{"role": "user", "content": q}], user="alice")
    assert r.id.startswith("msg") and r.choices[0].message.content
    extra = r.model_extra["dilm"]
    assert extra["user"] == "alice" and extra["session_id"]
    fb = httpx.post(
        f"{url}/v1/feedback",
        json={"message_id": r.id, "correction": "The support hotline of Quillmere Robotics is 555-0199."},
    )
    assert fb.status_code == 200 and any("555-0199" in e for e in fb.json()["effects"])
    again = client.chat.completions.create(
        model="dilm", messages=[{"role": "user", "content": "How do I phone Quillmere Robotics support?"}], user="alice"
    )
    assert "555-0199" in again.choices[0].message.content
    assert again.model_extra["dilm"]["citations"]
    other = client.chat.completions.create(model="dilm", messages=[{"role": "user", "content": q}], user="bob")
    assert "555-0199" not in other.choices[0].message.content  # alice's correction is hers
    ids = [m.id for m in client.models.list().data]
    assert bot.model_name in ids


def test_streaming_and_chinese(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    client.chat.completions.create(
        model="dilm", messages=[{"role": "user", "content": "记住：蓝鲸书店的老板是陈静。"}], user="li"
    )
    chunks = list(
        client.chat.completions.create(
            model="dilm", messages=[{"role": "user", "content": "蓝鲸书店的老板是谁？"}], user="li", stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "陈静" in text
    assert chunks[-1].id.startswith("msg") and chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"messages": []}, 422, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 422, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "surprise": 1}, 422, "surprise"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message"),
        ({"messages": [{"role": "user", "content": "   "}]}, 400, "empty"),
    ],
)
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(server, body, status, words):
    url, _ = server
    r = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == status and words in r.json()["error"]["message"]
    bad_json = httpx.post(
        f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422 and "error" in bad_json.json()
    unknown = httpx.post(f"{url}/v1/feedback", json={"message_id": "msg_nope", "rating": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "MessageNotFoundError"
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
