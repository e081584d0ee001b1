"""The `dilm chat` terminal loop: read a message, stream the answer, take feedback commands."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

from dilm.assistant import Assistant
from dilm.errors import DilmError
from dilm.types import Reply

HELP = """\
Type a message and press Enter. End a line with \\ to continue on the next line,
or wrap a block in lines of three double quotes (\"\"\").
  /good [reason]   the last answer was good
  /bad [reason]    the last answer was bad
  /fix TEXT        correct the last answer
  /why             what the last answer was based on
  /new             start a new session
  /user NAME       talk as another user (starts a new session)
  /help            this help
  /quit            leave (or Ctrl-D)
Ctrl-C while an answer streams stops it."""


class Repl:
    def __init__(
        self, bot: Assistant, user: str, session: str | None, decoding: dict[str, Any], console: Console
    ) -> None:
        self.bot, self.user, self.session, self.decoding, self.console = bot, user, session, decoding, console
        self.last: Reply | None = None

    def run(self) -> None:
        c = self.console
        if self.session is not None:
            self.bot.sessions.get(self.session, self.user)  # fail early on a bad id
        c.print(f"[bold]dilm[/bold] · model {self.bot.model_name} · user {self.user} · /help for commands")
        while True:
            try:
                text = self.read()
            except EOFError:
                c.print()
                return
            except KeyboardInterrupt:
                c.print("\n[dim](Ctrl-D or /quit to leave)[/dim]")
                continue
            except UnicodeDecodeError:
                c.print("[red]error:[/red] input is not valid UTF-8")
                continue
            if not text.strip():
                continue
            try:
                if text.startswith("/"):
                    if self.command(text.strip()) is False:
                        return
                else:
                    self.answer(text)
            except DilmError as e:
                c.print(f"error: {e}", style="red", markup=False)

    def read(self) -> str:
        line = input("you> ")
        if line.strip() == '"""':
            lines = []
            while (nxt := input("... ")).strip() != '"""':
                lines.append(nxt)
            return "\n".join(lines)
        lines = [line]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(input("... "))
        return "\n".join(lines)

    def answer(self, text: str) -> None:
        stream = self.bot.stream(text, user=self.user, session=self.session, decoding=self.decoding)
        if not self.bot.model_loaded:
            with self.console.status("loading the model…"):
                _ = self.bot.backend
        sys.stdout.write("dilm> ")
        try:
            for delta in stream:
                sys.stdout.write(delta)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            self.console.print("[dim](cancelled; nothing was saved)[/dim]")
            return
        sys.stdout.write("\n")
        self.last = stream.reply
        if self.last is not None:
            self.session = self.last.session_id

    def command(self, line: str) -> bool | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        c = self.console
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            c.print(HELP, markup=False)
        elif name == "/new":
            self.session, self.last = None, None
            c.print("[dim]new session[/dim]")
        elif name == "/user":
            if not arg:
                c.print(f"you are {self.user}; /user NAME switches")
            else:
                self.user, self.session, self.last = arg, None, None
                c.print(f"[dim]now talking as {arg} (new session)[/dim]")
        elif name in ("/good", "/bad", "/fix"):
            if self.last is None:
                c.print("nothing to give feedback on yet: ask something first")
                return None
            if name == "/fix":
                result = self.bot.feedback(self.last.id, correction=arg, user=self.user)
            else:
                rating = 1 if name == "/good" else -1
                result = self.bot.feedback(self.last.id, rating=rating, reason=arg or None, user=self.user)
            c.print(f"[dim]thanks: stored {result.kind} ({'; '.join(result.effects)})[/dim]")
            if result.question:  # a confirmation: the user's next message answers it
                c.print(result.question, markup=False)
        elif name == "/why":
            self.why()
        else:
            c.print(f"unknown command {name}: /help lists them", markup=False)
        return None

    def why(self) -> None:
        r = self.last
        if r is None:
            self.console.print("no answer yet")
            return
        d = r.decoding
        self.console.print(
            f"message {r.id} · model {r.model} · adapter {r.adapter_version or 'none'}\n"
            f"decoding {d.get('strategy')} (max_new_tokens {d.get('max_new_tokens')}) · "
            f"{r.prompt_tokens} prompt + {r.completion_tokens} answer tokens · {r.latency_ms / 1000:.1f} s",
            markup=False,
        )
        if not r.citations:
            self.console.print("no memories or facts were used for this answer")
        for cit in r.citations:
            self.console.print(f"  [{cit.get('id')}] {cit.get('text')}", markup=False)
        known = r.checks.get("known_answer")
        if known:
            what = f"repaired: {known['repaired']}" if known.get("repaired") else "the model's answer stated it"
            self.console.print(f"known answer {known['value']!r} ({known['how']}); {what}", markup=False)
        guard = r.checks.get("guard", {})
        if guard.get("rules"):
            broken = ", ".join(f"{v['rule']} ({v['reason']})" for v in guard.get("violations", [])) or "none broken"
            self.console.print(f"rules checked: {', '.join(guard['rules'])}; {broken}; {guard['action']}", markup=False)
        if guard.get("reward"):
            rw = guard["reward"]
            self.console.print(
                f"reward model {rw['version']}: scores {rw['scores']}, chose #{rw['chosen']}", markup=False
            )
        for c in guard.get("contradictions", []):
            self.console.print(f"contradiction repaired: {c}", markup=False)
        pol = r.checks.get("policy")
        if pol:
            what = f"asked ({pol.get('kind')}, {pol.get('signal')})" if pol.get("action") == "ask" else pol["action"]
            self.console.print(f"policy: {what}", markup=False)
        if "guard_ms" in r.checks:
            self.console.print(
                f"generation {r.checks.get('generate_ms', 0):.0f} ms · guard {r.checks['guard_ms']:.1f} ms",
                markup=False,
            )
        for effect in r.checks.get("effects", []):
            self.console.print(f"  learned: {effect}", markup=False)
