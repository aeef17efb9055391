"""How often the judge panel agrees with the reward model, and how position-consistent it is.

    python examples/multilingual/judge_vs_rm.py [--verdicts ml-arbitrage-vs-single@latest]

Reads the verdicts `assay judge winrate --datasets` registered (A: arbitrage SFT data, B: the
single-teacher baseline's) and the generic row outputs of both runs (their `scores.reward_best`
is the reward of the completion each chose), pairs them by prompt, and prints: the judges'
position consistency, and among the prompts where the two rewards differ and the panel did not
tie, the fraction where the panel preferred the side with the higher reward.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verdicts", default="ml-arbitrage-vs-single@latest")
    parser.add_argument("--a-rows", default="ml-arbitrage-rows@latest")
    parser.add_argument("--b-rows", default="ml-single-rows@latest")
    args = parser.parse_args()
    from assay.settings import default_registry_root
    from datasets_registry import Registry

    registry = Registry(default_registry_root())

    def rewards(ref: str) -> dict[str, float]:
        rows = registry.open(ref).to_arrow().select(["prompt_messages", "scores"]).to_pylist()
        return {json.dumps(r["prompt_messages"]): r["scores"]["reward_best"] for r in rows if r["scores"]}

    a, b = rewards(args.a_rows), rewards(args.b_rows)
    verdicts = registry.open(args.verdicts).to_arrow().to_pylist()
    judged = [v for r in verdicts for v in r["judge_verdicts"]]
    consistent = sum(v["consistent"] for v in judged)
    parsed = sum(v["first_order"] is not None and v["second_order"] is not None for v in judged)
    print(f"{len(verdicts)} prompts, {len(judged)} judge verdicts: {parsed} parsed in both orders, "
          f"{consistent} consistent ({consistent / len(judged):.3f})")  # fmt: skip
    agree = decided = same_reward = 0
    for row in verdicts:
        key = json.dumps(row["prompt_messages"])
        if key not in a or key not in b:
            continue
        if a[key] == b[key]:
            same_reward += 1
            continue
        if row["verdict"] == "tie":
            continue
        decided += 1
        agree += (row["verdict"] == "a") == (a[key] > b[key])
    share = agree / decided if decided else float("nan")
    print(f"reward differs on {len(verdicts) - same_reward} prompts; the panel decided {decided} of them; "
          f"agrees with the reward model on {agree} ({share:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
