"""Synthetic preference pairs a tiny model can learn, for reward-model tests."""

from tiny_models import PROMPTS  # the tiny tokenizer was trained on them

from reward_model.data import RMPair


def synthetic_pairs(n: int, stage: int = 2, label: float = 0.999) -> list[RMPair]:
    """Pairs a tiny model can learn: the chosen answer says yes, the rejected one says no."""
    pairs = []
    for i in range(n):
        prompt = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + " " * (i % 3)}]
        pairs.append(
            RMPair(
                prompt,
                [{"role": "assistant", "content": "My answer is yes." + " yes" * (i % 4)}],
                [{"role": "assistant", "content": "My answer is no." + " no" * (i % 5)}],
                label,
                stage,
                id=f"p{i}",
            )
        )
    return pairs


def pair_rows(pairs: list[RMPair]) -> list[dict]:
    """rm_pairs rows for a registry table."""
    return [
        {"id": p.id, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "label": p.label,
         "stage": p.stage}
        for p in pairs
    ]  # fmt: skip
