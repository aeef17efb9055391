"""LLM backends behind one config shape (`EngineConfig`)."""

from datagen.engines.base import COMPLETIONS_TYPE, Completion
from datagen.engines.config import EngineConfig, SamplingConfig

__all__ = ["COMPLETIONS_TYPE", "Completion", "EngineConfig", "SamplingConfig"]
