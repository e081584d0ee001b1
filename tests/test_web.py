"""The web page at `/` in a real headless Chromium (Playwright) against a real server and the embedded model.

The `bot` fixture (conftest) is `Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 24})`.

Needs Debian's chromium at /usr/bin/chromium (`scripts/setup-browser.sh` installs it); skipped without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dilm.server.app import create_app
from tests.serving import serving
from tests.stand_ins import publish_stand_in
from tests.waiting import HANG_MS, http

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium: run scripts/setup-browser.sh to install it", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

# Every wait below (expect, click, goto) waits for its condition; HANG_MS only ends a hang, with Playwright's
# message saying what was awaited. Playwright's own defaults (5 s for expect, 30 s for actions) are deadlines
# that a loaded machine misses.
expect.set_options(timeout=HANG_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, timeout=HANG_MS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(HANG_MS)  # actions and navigation
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#app")).to_be_visible()


def send(page: Page, text: str, box_label: str = "Message"):  # type: ignore[no-untyped-def]
    """Type a message, press Enter, wait for the streamed answer to finish; the answer's locator."""
    before = page.locator("article.answer").count()
    box = page.get_by_label(box_label, exact=True)
    box.fill(text)
    box.press("Enter")
    answer = page.locator("article.answer").nth(before)
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(answer.locator(".text")).not_to_be_empty()
    expect(answer).not_to_have_class(re.compile("failed"))
    return answer


def test_chat_streams_a_correction_teaches_and_a_new_chat_cites_it(bot, page):
    _, admin = bot.keys.create("admin")
    with serving(create_app(bot)) as url:
        page.goto(url)  # no key yet: the key form
        expect(page.get_by_label("API key")).to_be_visible()
        sign_in(page, url, admin)
        expect(page.locator("#who")).to_contain_text("Admin")
        expect(page.get_by_role("heading", name="Administration")).to_be_visible()
        page.get_by_label("Act as user").fill("carol")
        page.get_by_label("Act as user").press("Enter")

        # The answer streams in: the SSE body is read piece by piece into an aria-live region.
        page.evaluate(
            """() => { window.__pieces = [];
                 new MutationObserver(() => {
                   const t = document.querySelector('article.answer .text');
                   if (t) window.__pieces.push(t.textContent);
                 }).observe(document.getElementById('messages'), {subtree: true, childList: true,
                                                                  characterData: true}); }"""
        )
        answer = send(page, "What is the support hotline of Quillmere Robotics?")
        assert len(set(page.evaluate("window.__pieces"))) > 2, "the answer did not arrive in pieces"
        assert answer.locator(".text").get_attribute("aria-live") == "polite"
        guess = answer.locator(".text").inner_text()

        # Correct it in the editor (prefilled with the answer).
        answer.get_by_role("button", name="Correct this answer").click()
        editor = answer.get_by_label("Your correction")
        expect(editor).to_have_value(guess)
        editor.fill("The support hotline of Quillmere Robotics is 555-0199.")
        answer.get_by_role("button", name="Save correction").click()
        expect(answer.locator(".note")).to_contain_text("555-0199")
        expect(page.locator("#memories")).to_contain_text("555-0199")  # the panel refreshed

        # A new chat, a paraphrase: the corrected answer, with its citation under it.
        page.get_by_role("button", name="New chat").click()
        expect(page.locator("#messages article")).to_have_count(0)
        again = send(page, "Which number do I call for Quillmere Robotics support?")
        expect(again.locator(".text")).to_contain_text("555-0199")
        expect(again.locator(".citations")).to_contain_text("555-0199")

        # Both chats are in the sidebar; opening the first shows its question and the original answer.
        sessions = page.locator("#sessions button.session")
        expect(sessions).to_have_count(2)
        sessions.nth(1).click()
        expect(page.locator("#messages .msg.user")).to_contain_text("What is the support hotline")
        expect(page.locator("#messages article.answer")).to_have_count(1)
        assert bot.history("carol", limit=10)  # it all happened as carol, the admin's choice


def test_deleting_a_memory_in_the_panel(bot, page):
    _, admin = bot.keys.create("admin")
    bot.memories.add("The gate code of Birchwood Depot is 4417.", user="default")
    keep = bot.memories.add("My cat is called Pixel.", user="default")
    bot.profiles.set("default", verbosity="short", language="en")
    with serving(create_app(bot)) as url:
        sign_in(page, url, admin)
        memories = page.locator("#memories")
        expect(memories).to_contain_text("4417")
        expect(page.locator("#facts")).to_contain_text("4417")  # facts extracted from it
        page.get_by_role("button", name="Delete memory: The gate code of Birchwood Depot is 4417.").click()
        expect(memories).not_to_contain_text("4417")
        expect(memories).to_contain_text("Pixel")
        r = http.get(f"{url}/v1/memories", params={"user": "default"}, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200
        assert [m["id"] for m in r.json()["data"]] == [keep.id]

        expect(page.locator("#facts")).not_to_contain_text("4417")  # the facts it stated went with it

        # A fact is retracted, a preference removed (PATCH /v1/profile with the key set to null).
        page.get_by_role("button", name=re.compile(r"^Delete fact: .*Pixel")).click()
        expect(page.locator("#facts")).not_to_contain_text("Pixel")
        assert not bot.facts.current(user="default")
        page.get_by_role("button", name="Remove preference: verbosity: short").click()
        expect(page.locator("#profile")).not_to_contain_text("verbosity")
        expect(page.locator("#profile")).to_contain_text("language: en")
        assert bot.profiles.get("default") == {"language": "en"}
        expect(page.locator("#errors")).to_be_empty()


def test_feedback_controls_regenerate_and_admin_charts(bot, page):
    _, admin = bot.keys.create("admin")
    with serving(create_app(bot)) as url:
        sign_in(page, url, admin)
        first = send(page, "Tell me about the moon.")
        # Thumbs down opens the reason tags; the rating and its reasons are sent together.
        first.get_by_role("button", name="Bad answer").click()
        first.get_by_label("too long").check()
        first.get_by_role("button", name="Send feedback").click()
        expect(first.get_by_role("button", name="Bad answer")).to_have_attribute("aria-pressed", "true")
        expect(first.locator(".note")).not_to_be_empty()

        # Regenerate: a second answer to the same question in the same session, then pick the better one.
        first.get_by_role("button", name="Regenerate").click()
        second = page.locator("article.answer").nth(1)
        expect(second).to_have_attribute("aria-busy", "false")
        page.get_by_role("button", name="The second answer is better").click()
        expect(page.locator(".compare .note")).not_to_be_empty()
        expect(second).to_have_class(re.compile("preferred"))
        first_id, second_id = first.get_attribute("data-id"), second.get_attribute("data-id")
        assert first_id and second_id and first_id != second_id
        rows = {r["id"]: r for r in bot.history("default", limit=10)}
        assert len({r["session_id"] for r in rows.values()}) == 1  # the same session
        kinds = {f["kind"]: f for f in rows[first_id]["feedback"]}
        assert kinds["rating"]["rating"] == -1 and kinds["rating"]["reasons"] == ["too long"]
        assert kinds["preference"]["text"] == second.locator(".text").inner_text()  # the worse one gets the better

        # The admin view: satisfaction charts drawn from the rating (as inline SVG), the adapter table.
        expect(page.locator("#adapters")).to_contain_text("No adapter versions yet.")
        gate = {"accepted": True, "reasons": [], "before": {"locality": 1.0}, "after": {"locality": 0.96}}
        v1 = publish_stand_in(bot, "user:zed", info={"gate": gate, "losses": {"sft": [2.3, 0.4]}}).version
        v2 = publish_stand_in(
            bot, "user:zed", live=False, parent=v1, info={"gate": gate, "losses": {"sft": [1.0, 0.5]}}
        ).version
        bad = {"accepted": False, "reasons": ["locality 0.71 < 0.9"], "before": {"locality": 1.0}, "after": {}}
        v3 = publish_stand_in(
            bot, "global", status="rejected", live=False, info={"gate": bad, "losses": {"kto": [0.5, 0.4]}}
        ).version
        page.get_by_role("button", name="Refresh").last.click()
        expect(page.locator("#sat-adapter svg[role=img]")).to_be_visible()
        expect(page.locator("#sat-day svg[role=img]")).to_be_visible()
        expect(page.locator("#sat-overall")).to_contain_text("0% positive of 1 rated")
        expect(page.locator("#repeat-table")).to_contain_text("No corrected values yet.")
        table = page.locator("#adapters")
        row = {v: table.locator(f"tr[data-version={v}]") for v in (v1, v2, v3)}
        expect(row[v3]).to_contain_text("locality 0.71 < 0.9")
        expect(row[v3]).to_contain_text("rejected")
        expect(row[v1]).to_contain_text("1 → 0.960")  # the gate's before → after
        expect(row[v1].locator("svg[role=img] polyline")).to_have_count(1)  # the learning curve
        expect(row[v1].get_by_role("button", name=re.compile("Activate"))).to_have_count(0)  # live already
        expect(row[v3].get_by_role("button", name=re.compile("Activate"))).to_have_count(0)  # rejected
        row[v2].get_by_role("button", name=f"Activate {v2}").click()
        expect(page.locator("#admin-note")).to_contain_text(f"{v2} is live for user:zed")
        assert bot.adapters.live(["user:zed"]).version == v2
        page.get_by_role("button", name="Roll back user:zed").click()
        expect(page.locator("#admin-note")).to_contain_text(f"user:zed now uses {v1}")
        assert bot.adapters.live(["user:zed"]).version == v1
        page.get_by_role("button", name="Roll back global").click()  # nothing live there: the error is shown
        expect(page.get_by_role("alert")).to_contain_text("400")


def test_a_user_key_sees_only_its_own_user(bot, page):
    _, alice = bot.keys.create("user", "alice")
    bot.memories.add("Alice's locker number is 12.", user="alice")
    bot.memories.add("Bob's locker number is 98.", user="bob")
    with serving(create_app(bot)) as url:
        page.goto(url)
        page.get_by_label("API key").fill("dilm-not-a-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("401")  # shown; the form stays
        expect(page.get_by_label("API key")).to_be_visible()
        assert page.evaluate("localStorage.getItem('dilm.key')") is None
        sign_in(page, url, alice)
        page.reload()  # the key is remembered
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#who")).to_contain_text("alice")
        expect(page.get_by_label("Act as user")).to_be_hidden()  # a user key's user is fixed
        expect(page.get_by_role("heading", name="Administration")).to_be_hidden()
        expect(page.locator("#memories")).to_contain_text("locker number is 12")
        expect(page.locator("#memories")).not_to_contain_text("98")

        # A direct fetch from the page with its key: bob's memories are refused.
        status, body = page.evaluate(
            """async () => {
                 const r = await fetch('/v1/memories?user=bob',
                                       {headers: {Authorization: 'Bearer ' + localStorage.getItem('dilm.key')}});
                 return [r.status, await r.json()];
               }"""
        )
        assert status == 403 and "alice" in body["error"]["message"] and "98" not in str(body)
        # …and the page shows such an error to the user.
        page.evaluate("() => window.dilm.guarded(() => window.dilm.api('GET', '/v1/memories?user=bob'))")
        expect(page.get_by_role("alert")).to_contain_text("403")

        answer = send(page, "What is my locker number?")
        expect(answer.locator(".text")).not_to_contain_text("98")


def test_chinese_ui_and_a_chinese_conversation_in_local_mode(bot, page):
    with serving(create_app(bot, local=True)) as url:
        page.goto(url)  # local mode: no key needed
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#who")).to_contain_text("Local mode")
        # Keyboard: Tab reaches the controls and the focused one is visibly outlined.
        page.locator("body").press("Tab")
        page.keyboard.press("Tab")
        focus = page.evaluate(
            """() => { const e = document.activeElement;
                       return [e.tagName, e.matches(':focus-visible'), getComputedStyle(e).outlineStyle,
                               parseFloat(getComputedStyle(e).outlineWidth)]; }"""
        )
        assert focus[0] in {"A", "BUTTON", "SELECT", "INPUT", "TEXTAREA"} and focus[1:3] == [True, "solid"]
        assert focus[3] >= 2
        page.get_by_label("Language", exact=True).select_option("zh")
        expect(page.get_by_role("button", name="新对话")).to_be_visible()
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.reload()  # the choice is remembered
        expect(page.get_by_role("button", name="新对话")).to_be_visible()

        box = page.get_by_label("消息", exact=True)
        box.fill("记住：蓝鲸书店的老板是陈静。")
        box.press("Shift+Enter")  # a newline, not a send
        expect(page.locator("article.answer")).to_have_count(0)
        assert box.input_value().endswith("\n")
        box.press("Enter")
        taught = page.locator("article.answer").first
        expect(taught).to_have_attribute("aria-busy", "false")
        expect(page.locator("#memories")).to_contain_text("陈静")

        page.get_by_role("button", name="新对话").click()
        answer = send(page, "蓝鲸书店的老板是谁？", "消息")
        expect(answer.locator(".text")).to_contain_text("陈静")
        expect(page.locator("#messages .msg.user")).to_contain_text("蓝鲸书店的老板是谁？")
        expect(answer.get_by_role("button", name="更正这个回答")).to_be_visible()


def test_an_attached_picture_is_read_shown_and_kept_in_the_history(bot, page, tmp_path):
    from tests.test_openai_protocol import picture

    receipt = tmp_path / "receipt.png"
    receipt.write_bytes(picture(["Pinewood Bakery", "TOTAL 41.75"]))
    notice = tmp_path / "notice.png"
    notice.write_bytes(picture(["停车须知", "车位 B-214"]))
    with serving(create_app(bot, local=True)) as url:
        page.goto(url)
        page.locator("#attach-input").set_input_files([str(receipt), str(notice)])
        expect(page.locator("#attachments img")).to_have_count(2)
        page.get_by_role("button", name="Remove image 2").click()
        expect(page.locator("#attachments img")).to_have_count(1)
        answer = send(page, "What is the total on this receipt?")
        expect(page.locator("#attachments img")).to_have_count(0)  # sent with the message
        expect(page.locator(".msg.user img.picture")).to_have_count(1)
        expect(answer.locator(".text")).to_contain_text("41.75")  # the answer uses the picture's text
        page.locator("#attach-input").set_input_files([str(notice)])
        send(page, "这张图片上的车位号是什么？")
        sessions = bot.sessions.list("default")
        said = [m for m in bot.sessions.messages(sessions[0].id) if m.role == "user"]
        assert "41.75" in said[0].meta["images"][0]["text"] and "B-214" in said[1].meta["images"][0]["text"]
        page.get_by_role("button", name="New chat").click()
        page.locator("#sessions button.session").first.click()  # the conversation again
        expect(page.locator(".msg.user img.picture")).to_have_count(2)  # fetched from /v1/images with the key
