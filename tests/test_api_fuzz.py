"""Schemathesis over the served OpenAPI schema: generated valid and invalid requests to every operation never
get a 5xx, and every response matches the schema (status codes, content types, bodies, headers)."""

from __future__ import annotations

import sys
from pathlib import Path

from dilm import Assistant
from dilm.server.app import create_app
from tests import waiting
from tests.serving import serving

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_server_errors_and_no_schema_mismatch(data_dir, backend):
    with Assistant.open(
        data_dir, backend=backend, decoding={"max_new_tokens": 8}, server={"rate_per_minute": 0}
    ) as bot:
        key = bot.keys.create("admin")[1]
        with serving(create_app(bot)) as url:
            run = waiting.run(
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "--no-color",
                    "--config-file",
                    str(CONFIG),
                    "run",
                    f"{url}/openapi.json",
                    "--header",
                    f"Authorization: Bearer {key}",
                    "--max-examples",
                    "10",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--workers",
                    "1",
                    "--seed",
                    "1",
                    "--request-timeout",
                    str(waiting.HANG_S),
                ],
                "schemathesis to finish",
                capture_output=True,
                text=True,
            )
    summary = run.stdout[run.stdout.find("SUMMARY") :]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in summary and "Tested: " in summary
