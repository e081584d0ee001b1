"""The HTTP API against a real server on a free port: the official `openai` client, feedback, errors."""

from __future__ import annotations

import json
import queue
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from dilm import Assistant
from dilm.errors import GenerationCancelled
from dilm.server.app import create_app
from tests.serving import serving
from tests.stand_ins import publish_stand_in
from tests.waiting import HANG_S, get, http


@pytest.fixture
def server(data_dir, backend):
    """Local mode: no keys needed (every request is admin)."""
    with (
        Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 24}) as bot,
        serving(create_app(bot, local=True)) as url,
    ):
        yield url, bot


@pytest.fixture
def keyed(data_dir, backend):
    """Keys required; yields (url, bot, {"admin": key, "alice": key, "bob": key})."""
    with Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 16}) as bot:
        keys = {"admin": bot.keys.create("admin")[1]}
        for name in ("alice", "bob"):
            keys[name] = bot.keys.create("user", name)[1]
        with serving(create_app(bot)) as url:
            yield url, bot, keys


def client(url: str, key: str) -> httpx.Client:
    return http.Client(base_url=url, headers={"Authorization": f"Bearer {key}"})


def test_the_openai_client_works_unchanged_and_feedback_teaches(server):
    url, bot = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=HANG_S, max_retries=0)
    q = "What is the support hotline of Quillmere Robotics?"
    r = client.chat.completions.create(model="dilm", messages=[{"role": "user", "content": q}], user="alice")
    assert r.id.startswith("msg") and r.choices[0].message.content
    extra = r.model_extra["dilm"]
    assert extra["user"] == "alice" and extra["session_id"]
    fb = http.post(
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
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=HANG_S, max_retries=0)
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
    counted = list(
        client.chat.completions.create(
            model="dilm",
            messages=[{"role": "user", "content": "你好"}],
            user="li",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert counted[-1].choices == [] and counted[-1].usage.completion_tokens > 0
    with pytest.raises(openai.NotFoundError):  # an unknown session fails before the stream starts
        client.chat.completions.create(
            model="dilm", messages=[{"role": "user", "content": "hi"}], stream=True, extra_body={"session_id": "ses_x"}
        )


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"messages": []}, 422, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 422, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "surprise": 1}, 422, "surprise"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "user message"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            400,
            "last message",
        ),
        ({"messages": [{"role": "user", "content": "   "}]}, 400, "empty"),
    ],
)
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(server, body, status, words):
    url, _ = server
    r = http.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == status and words in r.json()["error"]["message"]
    bad_json = http.post(
        f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]["message"]
    unknown = http.post(f"{url}/v1/feedback", json={"message_id": "msg_nope", "rating": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "MessageNotFoundError"
    assert http.get(f"{url}/healthz").json()["status"] == "ok"


def test_bad_bytes_big_bodies_and_unknown_routes_get_json_errors(server):
    url, bot = server
    headers = {"content-type": "application/json"}
    bad_utf8 = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'
    r = http.post(f"{url}/v1/chat/completions", content=bad_utf8, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["message"]
    huge = http.post(f"{url}/v1/memories", json={"text": "x" * (2 << 20)})
    assert huge.status_code == 413 and "larger" in huge.json()["error"]["message"]
    assert http.get(f"{url}/v1/nowhere").json()["error"]["code"] == 404
    wrong_type = http.post(f"{url}/v1/feedback", json={"message_id": "m", "rating": 5})
    assert wrong_type.status_code == 422 and "rating" in wrong_type.json()["error"]["message"]
    assert bot.memories.list("default") == []  # nothing half-written


def test_keys_bind_a_user_key_to_its_user(keyed):
    url, bot, keys = keyed
    assert http.get(f"{url}/v1/memories").status_code == 401
    assert http.get(f"{url}/v1/memories", headers={"Authorization": "Bearer dilm-wrong"}).status_code == 401
    alice, bob, admin = client(url, keys["alice"]), client(url, keys["bob"]), client(url, keys["admin"])
    assert alice.get("/v1/whoami").json() == {"role": "user", "user": "alice", "local": False}
    assert alice.post("/v1/memories", json={"text": "Alice's dog is called Rex."}).status_code == 200
    assert bob.post("/v1/memories", json={"text": "鲍勃的猫叫咪咪。"}).status_code == 200
    mine = alice.get("/v1/memories").json()["data"]
    assert [m["text"] for m in mine] == ["Alice's dog is called Rex."]
    denied = alice.get("/v1/memories", params={"user": "bob"})
    assert denied.status_code == 403 and "alice" in denied.json()["error"]["message"]
    bobs = bob.get("/v1/memories").json()["data"]
    assert alice.delete(f"/v1/memories/{bobs[0]['id']}").status_code == 404  # not even its existence
    assert alice.post("/v1/memories", json={"text": "Everyone likes tea.", "global": True}).status_code == 403
    assert alice.post("/v1/adapters/rollback", json={"scope": "global"}).status_code == 403
    assert alice.get("/v1/stats/satisfaction").status_code == 403
    assert alice.get("/v1/stats/repeat-errors").status_code == 403
    assert alice.get("/v1/users/bob/export").status_code == 403
    # the admin acts for anyone and changes global knowledge
    assert [m["text"] for m in admin.get("/v1/memories", params={"user": "bob"}).json()["data"]] == ["鲍勃的猫叫咪咪。"]
    assert admin.post("/v1/memories", json={"text": "The office opens at 9.", "global": True}).status_code == 200
    hits = alice.get("/v1/memories", params={"q": "when does the office open"}).json()["data"]
    assert hits and hits[0]["scope"] == "global"
    # chat and feedback as alice; bob cannot rate alice's answer
    r = alice.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi!"}], "user": "alice"})
    assert r.status_code == 200 and r.json()["dilm"]["user"] == "alice"
    assert (
        alice.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "user": "bob"}
        ).status_code
        == 403
    )
    msg = r.json()["id"]
    assert bob.post("/v1/feedback", json={"message_id": msg, "rating": 1}).status_code == 404
    assert alice.post("/v1/feedback", json={"message_id": msg, "rating": 1}).status_code == 200
    session = r.json()["dilm"]["session_id"]
    assert bob.get(f"/v1/sessions/{session}/messages").status_code == 403
    assert [s["id"] for s in alice.get("/v1/sessions").json()["data"]] == [session]
    # revoking a key locks it out
    key_id = next(k["id"] for k in bot.store.api_keys() if k["user_id"] == "bob")
    bot.store.revoke_api_key(key_id)
    assert bob.get("/v1/memories").status_code == 401


def test_facts_profile_adapters_and_stats_over_http(keyed):
    url, bot, keys = keyed
    admin = client(url, keys["admin"])
    f1 = admin.post("/v1/facts", json={"subject": "Acme", "relation": "CEO", "object": "Ann Lee", "user": "alice"})
    f2 = admin.post("/v1/facts", json={"subject": "Acme", "relation": "CEO", "object": "Bo Chen", "user": "alice"})
    assert f1.status_code == f2.status_code == 200
    now = admin.get("/v1/facts", params={"user": "alice", "subject": "Acme"}).json()["data"]
    assert [f["object"] for f in now] == ["Bo Chen"]
    history = admin.get("/v1/facts", params={"user": "alice", "subject": "Acme", "history": True}).json()["data"]
    assert {f["object"] for f in history} == {"Ann Lee", "Bo Chen"}  # superseded, never deleted
    gone = admin.delete(f"/v1/facts/{f2.json()['id']}", params={"user": "alice"})
    assert gone.status_code == 200 and gone.json()["expired_at"]
    p = admin.patch("/v1/profile", json={"user": "alice", "language": "zh", "verbosity": "short"})
    assert p.status_code == 200 and p.json()["profile"] == {"language": "zh", "verbosity": "short"}
    p = admin.patch("/v1/profile", json={"user": "alice", "language": None})
    assert p.json()["profile"] == {"verbosity": "short"}
    bad = admin.patch("/v1/profile", json={"user": "alice", "verbosity": "enormous"})
    assert bad.status_code == 422 and "verbosity" in bad.json()["error"]["message"]
    assert admin.get("/v1/adapters").json()["data"] == []
    nothing = admin.post("/v1/adapters/rollback", json={"scope": "global"})
    assert nothing.status_code == 400 and "base model" in nothing.json()["error"]["message"]
    assert admin.post("/v1/adapters/v404/activate").status_code == 404
    r = admin.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hello"}], "user": "alice"})
    admin.post("/v1/feedback", json={"message_id": r.json()["id"], "rating": -1, "reason": ["too long"]})
    admin.post("/v1/feedback", json={"message_id": r.json()["id"], "rating": 1})  # the latest rating counts
    stats = admin.get("/v1/stats/satisfaction").json()
    assert stats["by_adapter"] == [{"key": "base", "rated": 1, "positive": 1, "satisfaction": 1.0}]
    assert stats["by_day"][0]["rated"] == 1
    repeats = admin.get("/v1/stats/repeat-errors").json()
    assert set(repeats) == {"by_day", "by_scope"} and all(r["repeats"] == 0 for r in repeats["by_day"])
    metrics = http.get(f"{url}/metrics").text
    assert 'dilm_http_requests_total{method="POST",route="/v1/feedback",status="200"} 2.0' in metrics
    assert 'dilm_feedback_total{kind="rating"} 2.0' in metrics


def test_export_and_forget_a_user_removes_everything_of_theirs_only(keyed):
    url, bot, keys = keyed
    alice, admin = client(url, keys["alice"]), client(url, keys["admin"])
    r = alice.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Who runs Acme?"}]})
    alice.post("/v1/feedback", json={"message_id": r.json()["id"], "correction": "Acme is run by Ann Lee."})
    bot.memories.add("Bob likes jazz.", user="bob")
    version = publish_stand_in(bot, "user:alice")  # a personal adapter version, to be forgotten too
    exported = alice.get("/v1/users/alice/export").json()
    assert exported["user"] == "alice" and len(exported["messages"]) == 2 and exported["feedback"]
    assert any("Ann Lee" in m["text"] for m in exported["memories"]) and exported["facts"]
    assert [a["version"] for a in exported["adapters"]] == [version.version]
    gone = alice.delete("/v1/users/alice")
    assert gone.status_code == 200 and gone.json()["deleted"]["messages"] == 2
    assert not (bot.data_dir / version.path).exists()
    assert alice.get("/v1/memories").status_code == 401  # forgetting a user revokes their keys
    after = admin.get("/v1/users/alice/export").json()
    assert after["messages"] == after["memories"] == after["facts"] == after["adapters"] == []
    ask = admin.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Who runs Acme?"}], "user": "alice"}
    )
    assert "Ann Lee" not in ask.json()["choices"][0]["message"]["content"]
    assert [m.text for m in bot.memories.list("bob")] == ["Bob likes jazz."]


def test_rate_limit_answers_429_with_retry_after(data_dir, backend):
    with Assistant.open(data_dir, backend=backend, server={"rate_per_minute": 3}) as bot:
        key = bot.keys.create("user", "carol")[1]
        with serving(create_app(bot)) as url:
            c = client(url, key)
            codes = [c.get("/v1/memories").status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            r = c.get("/v1/memories")
            assert (
                r.status_code == 429
                and int(r.headers["retry-after"]) >= 1
                and "rate limit" in r.json()["error"]["message"]
            )
            assert c.get("/healthz").status_code == 200  # health checks are not rate limited


def test_clients_leaving_mid_stream_stop_their_generation_free_their_slot_and_log_nothing(
    data_dir, backend, monkeypatch
):
    body = {
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "stream": True,
        "max_tokens": 400,
        "user": "dora",
    }
    ended: queue.Queue[str] = queue.Queue()  # how each generation ended: the event that proves it stopped
    generate = backend.generate

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            out = generate(*args, **kwargs)
        except GenerationCancelled:
            ended.put("cancelled")
            raise
        except BaseException as e:
            ended.put(f"failed: {e!r}")
            raise
        ended.put("ran to its end")
        return out

    monkeypatch.setattr(backend, "generate", watched)
    with (  # one generation slot: a leaked slot would hang the next request
        Assistant.open(data_dir, backend=backend, server={"generation_workers": 1}) as bot,
        serving(create_app(bot, local=True)) as url,
    ):
        for _ in range(2):
            with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                first = json.loads(next(line for line in r.iter_lines() if line.startswith("data:"))[6:])
                assert first["id"].startswith("msg_")  # every chunk carries the message id, from the first
            # the abandoned 400-token generation did not hold the model: it was cancelled, not run to its end
            assert get(ended, "the abandoned stream's generation to end") == "cancelled"
        ok = http.post(  # the slot is free again: with a leaked one this request would never be served
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "user": "dora", "max_tokens": 8},
        )
        assert ok.status_code == 200
        assert len(bot.history("dora")) == 2  # only the finished turn was logged


def test_local_mode_refuses_other_sites_and_odd_text_gets_a_json_error(server):
    url, bot = server
    hi = {"text": "I like tea."}
    evil = http.post(f"{url}/v1/memories", json=hi, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "local mode" in evil.json()["error"]["message"]
    rebound = http.get(f"{url}/v1/memories", headers={"Host": "attacker.example"})
    assert rebound.status_code == 403
    assert bot.memories.list("default") == []
    same = http.post(f"{url}/v1/memories", json=hi, headers={"Origin": url})
    assert same.status_code == 200
    escaped = b'{"message_id": "\\ud800", "rating": 1}'  # JSON may escape a lone surrogate; UTF-8 cannot hold it
    lone = http.post(f"{url}/v1/feedback", content=escaped, headers={"content-type": "application/json"})
    assert lone.status_code in (400, 422) and "unicode" in lone.json()["error"]["message"].lower()
    odd_user = http.get(f"{url}/v1/memories", params={"user": "a\tb"})
    assert odd_user.status_code == 422 and "user" in odd_user.json()["error"]["message"]


def test_concurrent_chats_and_feedback_all_land(server):
    url, bot = server

    def turn(i: int) -> str:
        with http.Client(base_url=url) as c:
            r = c.post(
                "/v1/chat/completions",
                json={
                    "messages": [{"role": "user", "content": f"Say the number {i}."}],
                    "user": f"u{i % 3}",
                    "max_tokens": 8,
                },
            )
            assert r.status_code == 200
            fb = c.post(
                "/v1/feedback", json={"message_id": r.json()["id"], "rating": 1 if i % 2 else -1, "user": f"u{i % 3}"}
            )
            assert fb.status_code == 200
            return fb.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(turn, range(12)))
    stored = {f["id"] for u in ("u0", "u1", "u2") for m in bot.history(u) for f in m["feedback"]}
    assert set(ids) <= stored and len(ids) == 12


def test_openapi_schema_lists_every_endpoint(server):
    url, _ = server
    schema = http.get(f"{url}/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/v1/feedback", "post"),
        ("/v1/memories", "get"),
        ("/v1/memories", "post"),
        ("/v1/memories/{memory_id}", "delete"),
        ("/v1/facts", "get"),
        ("/v1/profile", "patch"),
        ("/v1/adapters", "get"),
        ("/v1/adapters/rollback", "post"),
        ("/v1/users/{user_id}/export", "get"),
        ("/v1/users/{user_id}", "delete"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/v1/stats/satisfaction", "get"),
        ("/v1/stats/repeat-errors", "get"),
    ]:
        assert method in paths[path], (method, path)
    chat = paths["/v1/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert chat["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    page = http.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_n_candidates_come_back_as_choices_and_cors_is_off_unless_configured(server, data_dir, backend):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=HANG_S, max_retries=0)
    r = client.chat.completions.create(
        model="dilm", messages=[{"role": "user", "content": "Name a colour."}], n=2, max_tokens=8, seed=3
    )
    assert [c.index for c in r.choices] == [0, 1]
    preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in http.options(f"{url}/v1/chat/completions", headers=preflight).headers
    assert "access-control-allow-origin" not in http.get(f"{url}/healthz", headers={"Origin": "https://x"}).headers
    allowed = {"cors_origins": ["https://example.com"]}
    with (
        Assistant.open(data_dir / "cors", backend=backend, server=allowed) as bot,
        serving(create_app(bot, local=True)) as cors_url,
    ):
        ok = http.options(f"{cors_url}/v1/chat/completions", headers=preflight)
        assert ok.headers["access-control-allow-origin"] == "https://example.com"
