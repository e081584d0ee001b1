"""The `dilm` command line: an interface only; everything it does goes through `Assistant`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dilm.assistant import DEFAULT_USER, Assistant
from dilm.config import default_data_dir
from dilm.errors import DilmError, InvalidInputError
from dilm.types import Reply

app = typer.Typer(
    help="dilm: an assistant that learns from your feedback while you talk to it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show or change settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
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
        rows = bot.store.sessions(_user(user))
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
        data = {"data_dir": str(bot.data_dir), "database": str(bot.store.path), **data}
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
