"""Load test of `dilm serve` on 127.0.0.1: simulated users chat and give feedback, with a user key each.

Two phases in one run, side by side: one user alone, then many at once (default 20). Each user loops: ask a
question (JSON or streamed, alternately), then rate or correct the answer. A prober reads /healthz every 0.2 s
throughout: its latency shows whether the event loop stays free while the model generates. Afterwards every
feedback id the server acknowledged is looked up in the database.

    python benchmarks/server.py [--users 20] [--seconds 120] [--model NAME] [--runtime llamacpp|transformers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from dilm import Assistant
from dilm.store import DB_FILE

RESULTS = Path(__file__).parent / "results"
QUESTIONS = [
    "What is the support hotline of {org}?",
    "Who is the CEO of {org}?",
    "Where is {org} based?",
    "{org}的客服电话是多少？",
    "Name one product of {org}.",
]
ORGS = ["Quillmere Robotics", "Vantrelle Foods", "Orsk Analytics", "蓝鲸书店", "Halvard Marine"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def user(name: str, key: str, url: str, until: float, log: list[dict], acked: list[str]) -> None:
    rng = random.Random(name)
    headers = {"Authorization": f"Bearer {key}"}
    session = None
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as c:
        turn = 0
        while time.monotonic() < until:
            org = rng.choice(ORGS)
            q = rng.choice(QUESTIONS).format(org=org)
            body = {"messages": [{"role": "user", "content": q}], "max_tokens": 16, "stream": turn % 2 == 1}
            if session:
                body["session_id"] = session
            started = time.perf_counter()
            msg_id, status = None, 0
            try:
                if body["stream"]:
                    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                        status = r.status_code
                        async for line in r.aiter_lines():
                            if line.startswith("data: {"):
                                chunk = json.loads(line[6:])
                                if chunk.get("dilm"):
                                    msg_id, session = chunk["id"], chunk["dilm"]["session_id"]
                else:
                    r = await c.post("/v1/chat/completions", json=body)
                    status = r.status_code
                    if status == 200:
                        msg_id, session = r.json()["id"], r.json()["dilm"]["session_id"]
            except httpx.HTTPError as e:
                status = type(e).__name__
            log.append({"kind": "chat", "status": status, "s": time.perf_counter() - started})
            turn += 1
            if msg_id is None:
                continue
            fb = {"message_id": msg_id}
            if rng.random() < 0.3:
                fb["correction"] = f"The answer about {org} is: see {org}'s website."
            else:
                fb["rating"] = rng.choice([1, -1])
            started = time.perf_counter()
            try:
                r = await c.post("/v1/feedback", json=fb)
                status = r.status_code
                if status == 200:
                    acked.append(r.json()["id"])
            except httpx.HTTPError as e:
                status = type(e).__name__
            log.append({"kind": "feedback", "status": status, "s": time.perf_counter() - started})


async def probe(url: str, until: float, log: list[dict]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                status: int | str = (await c.get("/healthz")).status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            log.append({"kind": "healthz", "status": status, "s": time.perf_counter() - started})
            await asyncio.sleep(0.2)


async def phase(url: str, keys: list[tuple[str, str]], seconds: float) -> tuple[list[dict], list[str], float]:
    log: list[dict] = []
    acked: list[str] = []
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(probe(url, until, log), *(user(n, k, url, until, log, acked) for n, k in keys))
    return log, acked, time.monotonic() - started


def summary(log: list[dict], kind: str) -> dict:
    rows = [x for x in log if x["kind"] == kind]
    ok = [x["s"] * 1000 for x in rows if x["status"] == 200]
    pct = np.percentile(ok, [50, 95, 99]).round(1).tolist() if ok else [None] * 3
    return {"n": len(rows), "errors": len(rows) - len(ok), "p50": pct[0], "p95": pct[1], "p99": pct[2]}


def server_peak_rss_mb(pid: int) -> float:
    """The server process's peak resident set size (VmHWM in /proc, Linux), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=120, help="per phase (at most 300)")
    ap.add_argument("--model", default=None, help="catalogue name, .gguf or folder (default: the configured default)")
    ap.add_argument("--runtime", default=None, choices=["auto", "llamacpp", "transformers"])
    args = ap.parse_args()
    seconds = min(args.seconds, 300.0)
    console = Console(width=140)
    data = Path(tempfile.mkdtemp(prefix="dilm-load-"))
    with Assistant.open_keys(data) as api_keys:
        api_keys.create("admin")  # `dilm serve` without --local wants one
        keys = [(f"user{i}", api_keys.create("user", f"user{i}")[1]) for i in range(args.users)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = (data / "server.log").open("w")  # a file, not a pipe: a full pipe would stall the server
    env = dict(os.environ)
    env.update({k: v for k, v in (("DILM_MODEL", args.model), ("DILM_RUNTIME", args.runtime)) if v})
    server = subprocess.Popen(
        [sys.executable, "-m", "dilm", "serve", "--port", str(port), "--data-dir", str(data)],
        stderr=server_log,
        env=env,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: see {data / 'server.log'}")
            time.sleep(0.5)
        results = {}
        all_acked: list[str] = []
        for name, group in (("1 user", keys[:1]), (f"{args.users} users", keys)):
            console.print(f"[bold]{name}[/] for {seconds:.0f} s …")
            log, acked, took = asyncio.run(phase(url, group, seconds))
            all_acked += acked
            work = [x for x in log if x["kind"] != "healthz"]
            results[name] = {
                "users": len(group),
                "seconds": round(took, 1),
                "requests": len(work),
                "req_per_s": round(len(work) / took, 2),
                "answers_per_s": round(sum(x["kind"] == "chat" and x["status"] == 200 for x in log) / took, 2),
                "chat": summary(log, "chat"),
                "feedback": summary(log, "feedback"),
                "healthz": summary(log, "healthz"),
                "acknowledged_feedback": len(acked),
            }
        peak_rss_mb = server_peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
        server_log.close()
    db = sqlite3.connect(data / DB_FILE)  # read the file itself: what was acknowledged must be on disk
    found = {r[0] for r in db.execute("SELECT id FROM feedback")}
    db.close()
    missing = [i for i in all_acked if i not in found]

    model = f"{args.model or 'default model'}" + (f", {args.runtime}" if args.runtime else "")
    table = Table(title=f"dilm serve under load (127.0.0.1, {os.cpu_count()} cores, {model}, 16 tokens)")
    cols = ("phase", "req/s", "answers/s", "chat p50/p95/p99 ms", "feedback p50/p95/p99 ms", "healthz p50/p99 ms")
    for col in (*cols, "errors"):
        table.add_column(col)
    for name, r in results.items():
        c, f, h = r["chat"], r["feedback"], r["healthz"]
        table.add_row(
            name,
            f"{r['req_per_s']}",
            f"{r['answers_per_s']}",
            f"{c['p50']} / {c['p95']} / {c['p99']}",
            f"{f['p50']} / {f['p95']} / {f['p99']}",
            f"{h['p50']} / {h['p99']}",
            str(c["errors"] + f["errors"] + h["errors"]),
        )
    console.print(table)
    console.print(f"acknowledged feedback: {len(all_acked)}; found in the database: {len(all_acked) - len(missing)}")
    RESULTS.mkdir(exist_ok=True)
    out = {"phases": results, "acknowledged": len(all_acked), "missing": missing}
    console.print(f"server peak RSS: {peak_rss_mb:.0f} MiB")
    out |= {"model": args.model, "runtime": args.runtime, "server_peak_rss_mb": peak_rss_mb}
    name = "-".join(x for x in ("server", args.model, args.runtime) if x)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))
    if missing:
        raise SystemExit(f"{len(missing)} acknowledged feedback rows are missing")


if __name__ == "__main__":
    main()
