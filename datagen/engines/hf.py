"""The `hf` engine: batched generation with transformers (the CPU default).

Prompts are rendered with the tokenizer's chat template and left-padded so that a whole batch
generates in one `generate` call; each of the `n` samples is one call at its own temperature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from datagen.engines.base import Completion, PromptTooLongError
from datagen.engines.config import HFEngineConfig, SamplingConfig
from model_store import ResolvedModel

Conversation = Sequence[dict[str, str]]


class HFEngine:
    """A transformers causal LM loaded once, generating for batches of conversations."""

    def __init__(self, config: HFEngineConfig, model: ResolvedModel) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # Default to the CPUs Ray reserved for this replica, not the whole node.
        threads = config.torch_threads or max(1, math.ceil(config.num_cpus))
        torch.set_num_threads(threads)
        self.config = config
        self.model_id = model.ref
        self.tokenizer = AutoTokenizer.from_pretrained(model.path, **model.load_kwargs())
        if self.tokenizer.chat_template is None:
            raise ValueError(f"model {model.ref!r} has no chat template in its tokenizer")
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(
            model.path, dtype=dtype, **model.load_kwargs()
        ).eval()
        self.model.hf_quantizer = None  # GGUF weights are already dequantized on load
        self.stop_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def render(self, conversation: Conversation) -> str:
        """The prompt text of a conversation, ending where the assistant turn starts."""
        return self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True
        )

    def check_prompt(self, conversation: Conversation) -> None:
        """Raise PromptTooLongError if the rendered prompt exceeds `max_prompt_tokens`."""
        length = len(self.tokenizer(self.render(conversation), add_special_tokens=False).input_ids)
        if length > self.config.max_prompt_tokens:
            raise PromptTooLongError(
                f"prompt has {length} tokens; max_prompt_tokens is {self.config.max_prompt_tokens}"
            )

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        """Sample `sampling.n` completions for each conversation, in one batch per sample.

        Prompts are not length-checked here; callers that need the limit call `check_prompt`.
        """
        import torch

        if not conversations:
            return []
        prompts = [self.render(c) for c in conversations]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        width = batch["input_ids"].shape[1]
        results: list[list[Completion]] = [[] for _ in conversations]
        for k, temperature in enumerate(sampling.temperatures()):
            torch.manual_seed(sampling.seed + k)
            sample_args = (
                {"do_sample": True, "temperature": temperature, "top_p": sampling.top_p}
                if temperature > 0
                else {"do_sample": False}
            )
            with torch.inference_mode():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=sampling.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(self.stop_ids),
                    **sample_args,
                )
            for row, tokens in enumerate(output[:, width:].tolist()):
                results[row].append(self._completion(tokens, temperature, prompt_tokens[row]))
        return results

    def _completion(self, tokens: list[int], temperature: float, prompt_tokens: int) -> Completion:
        stop = next((i for i, token in enumerate(tokens) if token in self.stop_ids), None)
        kept = tokens if stop is None else tokens[:stop]
        return Completion(
            text=self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
            model=self.model_id,
            temperature=temperature,
            finish_reason="length" if stop is None else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(kept) + (0 if stop is None else 1),
        )
