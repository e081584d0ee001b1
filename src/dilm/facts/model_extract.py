"""Model-based triple extraction: ask the backend for JSON, parse it tolerantly, fall back to the rules.

Worth it with a capable model behind the openai backend (vLLM, Ollama); the embedded catalogue models use
the rules alone under `extraction = "auto"`. The answer is constrained to `SCHEMA` where the backend can
(llama.cpp: grammar-constrained decoding), so it always parses.
"""

from __future__ import annotations

import json
import re

from dilm.config import Decoding
from dilm.facts.extract import USER, Triple, canonical_relation, extract
from dilm.models.base import Backend

PROMPT = (
    "Extract the facts stated in the text as a JSON list of [subject, relation, object] triples. "
    'Use "user" as the subject for facts about the speaker. Output only JSON.\n'
    'Example: "Acme\'s CEO is Mira Quell and I live in Lisbon." -> '
    '[["Acme", "ceo", "Mira Quell"], ["user", "lives in", "Lisbon"]]\n\nText: '
)

# A list of [subject, relation, object] string triples (JSON Schema; enforced by llama.cpp's grammar sampler).
SCHEMA = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3},
    "maxItems": 8,
}


def parse_triples(text: str) -> list[Triple]:
    """Triples from a model's output: a JSON list of lists or of {subject, relation, object} objects, possibly
    wrapped in prose or a code fence; anything unusable is skipped."""
    out: list[Triple] = []
    match = re.search(r"\[.*\]", text, re.S)
    if match:
        try:
            data = json.loads(match.group())
        except ValueError:
            data = []
        for row in data if isinstance(data, list) else []:
            if isinstance(row, dict):
                row = [row.get("subject"), row.get("relation"), row.get("object")]
            if isinstance(row, list) and len(row) == 3 and all(isinstance(x, str) and x.strip() for x in row):
                subject, relation, obj = (x.strip() for x in row)
                subject = USER if subject.casefold() in {"user", "i", "me", "我", "用户"} else subject
                out.append(Triple(subject, canonical_relation(relation), obj))
    return out


def extract_with_model(backend: Backend, text: str) -> list[Triple]:
    """The model's triples, or the rules' when the model gives none."""
    try:
        reply = backend.generate(
            [{"role": "user", "content": PROMPT + text}],
            Decoding(max_new_tokens=128, stop=["\n\n"], json_schema=SCHEMA),
        )[0].text
    except Exception:  # noqa: BLE001 — extraction must never break feedback; the rules still apply
        return extract(text)
    return parse_triples(reply) or extract(text)
