"""Reading pictures: OCR character accuracy, and answers that quote a number from a picture, by language.

Makes 20 pictures (10 English, 10 Chinese) of short notices, receipts and tickets with Pillow: a different
font, size and layout each, words and numbers drawn at random (a fixed seed). For each picture it reports

1. character accuracy of dilm's reader (`dilm.images.TextReader`, RapidOCR): 1 - edit distance / length, on
   the text with spaces removed;
2. whether `bot.chat(question, images=[picture])` on the configured model (default: the embedded default)
   answers with the number the question asks for (goal >= 90 %);
3. OCR time per picture (ms) and the whole turn's time.

    python benchmarks/ocr.py [--model qwen2.5-coder-1.5b] [--seed 7]

Writes benchmarks/results/ocr-<model>.json. Chinese pictures need a CJK font (scripts/setup-browser.sh).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

from dilm import Assistant
from dilm.images import TextReader, load
from dilm.models.catalogue import DEFAULT

FONTS = Path("/usr/share/fonts/truetype")
LATIN = ["dejavu/DejaVuSans.ttf", "dejavu/DejaVuSerif.ttf", "liberation/LiberationMono-Regular.ttf",
         "liberation/LiberationSans-Bold.ttf", "liberation/LiberationSerif-Italic.ttf"]  # fmt: skip
CJK = ["wqy/wqy-microhei.ttc"]
SHOPS_EN = ["Harbour Deli", "Northgate Books", "Blue Fern Pharmacy", "Copper Kettle Cafe", "Quayside Hardware"]
ITEMS_EN = ["Tea", "Notebook", "Batteries", "Bread", "Soap", "Lamp", "Scarf", "Coffee beans"]
SHOPS_ZH = ["青禾便利店", "南湖书店", "晨光药房", "老城面馆", "东门五金"]
ITEMS_ZH = ["绿茶", "笔记本", "电池", "面包", "香皂", "台灯", "围巾", "咖啡豆"]


@dataclass
class Case:
    lang: str
    lines: list[str]
    question: str
    answer: str
    font: str
    size: int


def make_case(rng: random.Random, lang: str, i: int) -> Case:
    """A receipt, a ticket or a notice, with the number a question asks for."""
    font = CJK[0] if lang == "zh" else LATIN[i % len(LATIN)]
    size = [22, 26, 30, 34, 40][i % 5]
    kind = i % 3
    if kind == 0:  # a receipt: the total
        items = rng.sample(ITEMS_ZH if lang == "zh" else ITEMS_EN, 2)
        prices = [rng.randint(100, 9999) / 100 for _ in items]
        total = f"{sum(prices):.2f}"
        priced = list(zip(items, prices, strict=True))
        if lang == "zh":
            lines = [rng.choice(SHOPS_ZH), *(f"{n}  {p:.2f}元" for n, p in priced), f"合计 {total}元"]
            return Case(lang, lines, "这张小票的合计金额是多少？", total, font, size)
        lines = [rng.choice(SHOPS_EN), *(f"{n}  {p:.2f}" for n, p in priced), f"TOTAL {total}"]
        return Case(lang, lines, "What is the total on this receipt?", total, font, size)
    if kind == 1:  # a ticket: the seat number
        seat = f"{rng.randint(1, 40)}{rng.choice('ABCDEF')}"
        train = f"{rng.choice('GDK')}{rng.randint(100, 9999)}"
        if lang == "zh":
            lines = [f"车次 {train}", f"座位号 {seat}", f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日"]
            return Case(lang, lines, "图片里的座位号是多少？", seat, font, size)
        lines = [f"Train {train}", f"Seat {seat}", f"Platform {rng.randint(1, 12)}"]
        return Case(lang, lines, "What seat number is on this ticket?", seat, font, size)
    code = str(rng.randint(100000, 999999))  # a notice: the door code
    if lang == "zh":
        lines = ["访客须知", f"大门密码：{code}", "请随手关门"]
        return Case(lang, lines, "大门密码是多少？", code, font, size)
    lines = ["Visitor notice", f"Door code: {code}", "Please close the gate"]
    return Case(lang, lines, "What is the door code?", code, font, size)


def draw(case: Case) -> bytes:
    font = ImageFont.truetype(str(FONTS / case.font), case.size)
    gap = int(case.size * 1.6)
    width = max(int(font.getlength(line)) for line in case.lines) + 80
    img = Image.new("RGB", (width, gap * len(case.lines) + 60), "white")
    d = ImageDraw.Draw(img)
    for n, line in enumerate(case.lines):
        d.text((40, 30 + n * gap), line, fill="black", font=font)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def accuracy(truth: str, read: str) -> float:
    """1 - Levenshtein distance / len(truth), spaces removed (OCR spacing is not content)."""
    a, b = "".join(truth.split()), "".join(read.split())
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return max(0.0, 1 - prev[-1] / max(len(a), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cases = [make_case(rng, lang, i) for lang in ("en", "zh") for i in range(10)]
    reader, rows = TextReader(), []
    with tempfile.TemporaryDirectory() as tmp, Assistant.open(Path(tmp), model=args.model) as bot:
        bot.chat("Hello.")  # the model loads before the clock starts
        for n, case in enumerate(cases):
            png = draw(case)
            t0 = time.perf_counter()
            read = reader.read(load(png))
            ocr_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            reply = bot.chat(case.question, user=f"u{n}", images=[png], strategy="greedy", max_new_tokens=64)
            turn_ms = (time.perf_counter() - t0) * 1000
            rows.append(
                {"lang": case.lang, "font": case.font, "size": case.size, "truth": "\n".join(case.lines),
                 "read": read, "accuracy": accuracy("".join(case.lines), read), "question": case.question,
                 "answer": reply.text, "expected": case.answer, "correct": case.answer in reply.text,
                 "ocr_ms": ocr_ms, "turn_ms": turn_ms}
            )  # fmt: skip
    report(rows, args.model)


def report(rows: list[dict], model: str) -> None:
    table = Table(title=f"Reading pictures: {model}, {len(rows)} pictures")
    for col in ("lang", "pictures", "char accuracy %", "answers with the number %", "OCR ms p50", "turn ms p50"):
        table.add_column(col)
    summary = {}
    for lang in ("en", "zh", "all"):
        sel = [r for r in rows if lang in ("all", r["lang"])]
        s = {
            "pictures": len(sel),
            "char_accuracy": 100 * statistics.mean(r["accuracy"] for r in sel),
            "answers_correct": 100 * sum(r["correct"] for r in sel) / len(sel),
            "ocr_ms_p50": statistics.median(r["ocr_ms"] for r in sel),
            "turn_ms_p50": statistics.median(r["turn_ms"] for r in sel),
        }
        summary[lang] = s
        table.add_row(lang, str(s["pictures"]), f"{s['char_accuracy']:.1f}", f"{s['answers_correct']:.0f}",
                      f"{s['ocr_ms_p50']:.0f}", f"{s['turn_ms_p50']:.0f}")  # fmt: skip
    console = Console()
    console.print(table)
    for r in rows:
        if not r["correct"]:
            console.print(f"[yellow]miss[/] {r['lang']} {r['font']} {r['size']}px: expected {r['expected']!r}, "
                          f"answered {r['answer'][:120]!r}; read {r['read'][:80]!r}")  # fmt: skip
    out = Path(__file__).parent / "results" / f"ocr-{model}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rows": rows}, ensure_ascii=False, indent=1), encoding="utf-8")
    console.print(f"written: {out}")


if __name__ == "__main__":
    main()
