"""One config shape for every LLM backend: which model, how to run it, how to sample."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.model_store import DEFAULT_MODEL


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

    backend: Literal["hf", "openai"] = Field(
        "hf", description="LLM backend: `hf` (transformers, local) or `openai` (any compatible server)."
    )
    model: str = Field(
        DEFAULT_MODEL,
        description="hf: a stored model name, a local HF folder, or a .gguf file; openai: the served name.",
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

    @model_validator(mode="after")
    def _backend_fields(self) -> "EngineConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url")
        return self
