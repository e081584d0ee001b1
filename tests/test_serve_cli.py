"""`dilm serve` as README's main command runs it: a real process, the page at /, the README's openai example,
and the key rules of the command itself."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests import waiting
from tests.conftest import DILM
from tests.serving import free_port
from tests.test_cli import assert_one_line_error, run

README = Path(__file__).parents[1] / "README.md"


def readme_openai_example() -> str:
    text = README.read_text()
    section = text[text.index("## The server and the web page") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_readme_main_command_serves_the_page_and_the_openai_example_works(cli_env, data_dir):
    port = free_port()
    server = subprocess.Popen([*DILM, "serve", "--local", "--port", str(port)], env=cli_env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy_or_exited() -> bool:
            if server.poll() is not None:
                return True
            try:
                return waiting.http.get(f"{url}/healthz").status_code == 200
            except waiting.http.HTTPError:  # not listening yet
                return False

        waiting.until(healthy_or_exited, "`dilm serve` to answer /healthz", every=0.3)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        page = waiting.http.get(url)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert waiting.http.get(f"{url}/web/app.js").status_code == 200
        example = readme_openai_example().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        what = "the README's openai example to finish"
        ran = waiting.run([DILM[0], "-c", example], what, env=cli_env, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip()  # the answer and the session id
        facts = waiting.http.get(f"{url}/v1/facts", params={"user": "alice"}).json()["data"]
        assert any("Mira Quell" in f["object"] for f in facts)  # the README's correction was learned
    finally:
        server.terminate()
        waiting.wait(server, "`dilm serve` to exit after SIGTERM")


def test_serve_refuses_keyless_mode_off_loopback_and_keyed_mode_without_an_admin_key(cli_env):
    assert_one_line_error(run(cli_env, "serve", "--local", "--host", "0.0.0.0", ok=False), "loopback")
    assert_one_line_error(run(cli_env, "serve", "--host", "0.0.0.0", ok=False), "dilm keys create --admin")


def test_keys_create_list_revoke(cli_env):
    created = run(cli_env, "keys", "create", "--user", "alice")
    secret = created.stdout.strip()
    assert secret.startswith("dilm-") and "key_" in created.stderr
    listed = run(cli_env, "keys", "list", "--json").stdout
    assert "alice" in listed and secret not in listed and "hash" not in listed
    key_id = re.search(r"key_\w+", created.stderr).group(0)  # type: ignore[union-attr]
    run(cli_env, "keys", "revoke", key_id)
    assert '"revoked_at": null' not in run(cli_env, "keys", "list", "--json").stdout
    assert_one_line_error(run(cli_env, "keys", "create", ok=False), "--admin or --user")
    assert_one_line_error(run(cli_env, "keys", "revoke", "key_nope", ok=False), "no API key")


def test_users_export_and_forget(cli_env):
    run(cli_env, "ask", "Remember: my cat is called Mimi.", "--user", "zoe")
    exported = json.loads(run(cli_env, "users", "export", "zoe").stdout)
    assert exported["user"] == "zoe" and len(exported["messages"]) == 2
    forgot = run(cli_env, "users", "forget", "zoe", "--yes").stdout
    assert "2 messages" in forgot
    assert json.loads(run(cli_env, "users", "export", "zoe").stdout)["messages"] == []
