"""Settings: defaults < config.toml < DILM_* env < arguments; bad settings are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dilm.config import Settings
from dilm.errors import ConfigError


def test_precedence(tmp_path: Path, monkeypatch):
    (tmp_path / "config.toml").write_text(
        'system_prompt = "from toml"\nmax_retries = 5\n[decoding]\nstrategy = "beam"\nnum_beams = 3\n'
    )
    s = Settings.load(tmp_path)
    assert (s.system_prompt, s.max_retries, s.decoding.strategy, s.decoding.num_beams) == ("from toml", 5, "beam", 3)
    monkeypatch.setenv("DILM_MAX_RETRIES", "7")
    monkeypatch.setenv("DILM_DECODING__STRATEGY", "sample")
    s = Settings.load(tmp_path)
    assert s.max_retries == 7 and s.decoding.strategy == "sample"
    assert Settings.load(tmp_path, max_retries=1).max_retries == 1


@pytest.mark.parametrize(
    "text,message",
    [
        ("max_retries = 'many'", "max_retries"),
        ("no_such_setting = 1", "no_such_setting"),
        ("[decoding]\nstrategy = 'greedy'\nn = 3", "n > 1"),
        ("this is not toml", "config.toml"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, message: str):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings.load(tmp_path)
