"""The `hf` engine: batched generation with transformers (the CPU default).

Prompts are rendered with the tokenizer's chat template. A `generate` call turns every
(conversation, sample) pair into one sequence, sorts the sequences by prompt length and decodes
them in left-padded groups of at most `batch_size` with our own loop over the model's forward
pass: a sequence that stops leaves its group (and the KV cache) at once, so a group no longer
runs until its longest sample ends for every row (1.39x the tokens/s on the demo's prompts:
docs/performance.md, "Length-aware batching for the `hf` engine").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datagen.engines.base import Completion, PromptTooLongError
from datagen.engines.config import HFEngineConfig, SamplingConfig, replica_threads
from datagen.engines.nucleus import sample_from_probs
from model_store import ResolvedModel

Conversation = Sequence[dict[str, str]]


class HFEngine:
    """A transformers causal LM loaded once, generating for batches of conversations."""

    def __init__(self, config: HFEngineConfig, model: ResolvedModel) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # The CPUs Ray reserved for this replica by default, not the whole node.
        torch.set_num_threads(replica_threads(config))
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
        # Token positions run through the model so far (padding and rows included): what a
        # batching strategy costs, read by tests and benchmarks.
        self.token_slots = 0

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
        """Sample `sampling.n` completions for each conversation, length-aware.

        Every (conversation, sample) pair is one sequence; the sequences are sorted by prompt
        length and cut into groups of at most `batch_size`, so prompts of similar length share
        a group (little padding), and a sequence leaves its group as soon as it stops (finished
        sequences cost nothing more). Sample k of a conversation is drawn with its own
        generator seeded `sampling.seed + k`, so, as with the `vllm` engine, it does not depend
        on which rows shared the batch (up to float rounding of the batched matmuls).

        Prompts are not length-checked here; callers that need the limit call `check_prompt`.
        """
        if not conversations:
            return []
        temperatures = sampling.temperatures()
        encoded = [self.tokenizer(self.render(c), add_special_tokens=False).input_ids for c in conversations]
        pairs = [(row, k) for row in range(len(conversations)) for k in range(len(temperatures))]
        pairs.sort(key=lambda pair: len(encoded[pair[0]]))  # stable: ties keep their order
        results: list[list[Completion | None]] = [[None] * len(temperatures) for _ in conversations]
        group = max(1, self.config.batch_size)
        for first in range(0, len(pairs), group):
            chunk = pairs[first : first + group]
            outputs = self.decode(
                [encoded[row] for row, _ in chunk],
                [temperatures[k] for _, k in chunk],
                [sampling.seed + k for _, k in chunk],
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
            )
            for (row, k), tokens in zip(chunk, outputs, strict=True):
                results[row][k] = self._completion(tokens, temperatures[k], len(encoded[row]))
        return [[c for c in samples if c is not None] for samples in results]

    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        temperatures: Sequence[float],
        seeds: Sequence[int],
        top_p: float,
        max_tokens: int,
    ) -> list[list[int]]:
        """Generate one sequence per prompt in one left-padded batch, dropping stopped rows.

        Args:
            prompts: Prompt token ids, one list per sequence.
            temperatures: Each sequence's temperature (0: greedy).
            seeds: Each sequence's sampling seed.
            top_p: Nucleus mass kept before sampling.
            max_tokens: At most this many new tokens per sequence.

        Returns:
            Each sequence's new tokens, the stop token included if it stopped.
        """
        import torch
        from transformers import DynamicCache

        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        temps = torch.tensor(temperatures, dtype=torch.float32)
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        outputs: list[list[int]] = [[] for _ in prompts]
        active = list(range(len(prompts)))  # which sequences the batch's rows are
        cache = DynamicCache(config=self.model.config)
        self.token_slots += ids.numel()
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            next_position = positions[:, -1] + 1
            for step in range(max_tokens):
                tokens = sample_tokens(logits, temps, [generators[i] for i in active], top_p)
                keep = []
                for j, token in enumerate(tokens.tolist()):
                    outputs[active[j]].append(token)
                    if token not in self.stop_ids:
                        keep.append(j)
                if not keep or step == max_tokens - 1:
                    break
                if len(keep) < len(active):  # stopped rows leave the batch and its cache
                    index = torch.tensor(keep)
                    cache.batch_select_indices(index)
                    mask, temps, tokens = mask[index], temps[index], tokens[index]
                    next_position = next_position[index]
                    active = [active[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                self.token_slots += len(active)
                logits = self.model(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    position_ids=next_position[:, None],
                    past_key_values=cache,
                    use_cache=True,
                ).logits[:, -1, :]
                next_position = next_position + 1
        return outputs

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


def sample_tokens(logits: Any, temperatures: Any, generators: Sequence[Any], top_p: float) -> Any:
    """One token per row: argmax where the temperature is 0, else a top-p sample.

    Each row draws its one uniform number from its own generator and inverts the nucleus's
    cumulative distribution (found without sorting the vocabulary: datagen/engines/nucleus.py),
    so a row's token depends only on its logits and its generator.
    """
    import torch

    greedy = logits.argmax(dim=-1)
    sampled_rows = temperatures > 0
    if not bool(sampled_rows.any()):
        return greedy
    scaled = logits.float() / temperatures.clamp(min=1e-6)[:, None]
    uniform = torch.cat([torch.rand(1, generator=g) for g in generators])
    sampled = sample_from_probs(torch.softmax(scaled, dim=-1), uniform, top_p)
    return torch.where(sampled_rows, sampled, greedy)
