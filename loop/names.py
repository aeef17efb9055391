"""The loop's store names and step labels, as pure functions of its spec."""

from __future__ import annotations

from loop.refinement import trial_steps
from loop.spec import ExpertStep, LoopSpec, PolishRound


def leave_one_out(spec: LoopSpec) -> bool:
    """Leave-one-out soups only where the rest is a soup: with two experts it is the other expert."""
    return spec.merge is not None and spec.merge.leave_one_out and len(spec.experts) > 2


def polish_labels(spec: LoopSpec) -> list[tuple[str, PolishRound]]:
    """Each polish run in order: the round's name, with `-i` when the round repeats."""
    labels = []
    for round_ in spec.polish.rounds if spec.polish else []:
        if round_.repeat == 1:
            labels.append((round_.name, round_))
        else:
            labels += [(f"{round_.name}-{i}", round_) for i in range(1, round_.repeat + 1)]
    return labels


def merged_model(spec: LoopSpec) -> str:
    """The model after the merge: the soup, or the only expert."""
    return spec.model_name("soup" if spec.merge is not None else spec.experts[0].name)


def final_role(spec: LoopSpec) -> str:
    """The evaluation role of the loop's final model (its `eval:ROLE` step)."""
    if spec.polish is not None:
        return "final" if spec.polish.interpolation is not None else "polished"
    return "soup" if spec.merge is not None else spec.experts[0].name


def final_model(spec: LoopSpec) -> str:
    """The loop's final model: interpolated, polished, the soup, or the only expert."""
    role = final_role(spec)
    if role == "polished":
        return spec.model_name(f"polish-{polish_labels(spec)[-1][0]}")
    return spec.model_name(role)


def sft_model(spec: LoopSpec, expert: ExpertStep) -> str:
    """An expert's SFT model: the expert itself, or its `-sft` base when preference training follows."""
    return spec.model_name(f"{expert.name}-sft" if expert.preference is not None else expert.name)


def planned_models(spec: LoopSpec) -> list[str]:
    """Every model the loop registers, by store name."""
    models = []
    if spec.refinement is not None:
        models.append(spec.model_name("refine-base"))
        models += [spec.model_name(step.replace(":", "-")) for step, _ in trial_steps(spec.refinement)]
    for expert in spec.experts:
        models += [spec.model_name(f"{expert.name}-seed-{seed}") for seed in expert.seeds or []]
        if expert.preference is not None:
            models.append(spec.model_name(f"{expert.name}-sft"))
        models.append(spec.model_name(expert.name))
    if spec.merge is not None:
        models.append(spec.model_name("soup"))
        if leave_one_out(spec):
            models += [spec.model_name(f"without-{e.name}") for e in spec.experts]
    models += [spec.model_name(f"polish-{label}") for label, _ in polish_labels(spec)]
    if spec.polish is not None and spec.polish.interpolation is not None:
        models.append(spec.model_name("final"))
    return models
