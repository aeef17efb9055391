"""LLM backends (hf, vllm, openai), each with its own config class, discriminated by `backend`."""

from datagen.engines.base import COMPLETIONS_TYPE, Completion, PromptTooLongError
from datagen.engines.config import (
    AnyEngineConfig,
    EngineConfig,
    HFEngineConfig,
    OpenAIEngineConfig,
    SamplingConfig,
    VLLMEngineConfig,
    parse_engine_config,
)

__all__ = [
    "COMPLETIONS_TYPE",
    "AnyEngineConfig",
    "Completion",
    "EngineConfig",
    "HFEngineConfig",
    "OpenAIEngineConfig",
    "PromptTooLongError",
    "SamplingConfig",
    "VLLMEngineConfig",
    "parse_engine_config",
]
