"""Steps that produce models: experts (one run per seed and their seed merge, preference
training after SFT), polish rounds, the soup (given or searched weights) and WARP's
interpolation. Every trained model passes the contamination gate first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loop.context import LoopContext, LoopStepError, split_ref
from loop.data import dataset_ref
from loop.names import merged_model, sft_model
from loop.spec import ExpertStep, LoopSpec, PolishRound
from loop.state import LoopState


def train_expert(
    expert: ExpertStep, spec: LoopSpec, state: LoopState, context: LoopContext, seed: int | None = None
) -> dict[str, Any]:
    """One SFT run (of one seed, given `seed`); with `seeds` and no `seed`, the seed merge."""
    ref = dataset_ref(expert.dataset, spec, state)
    if seed is not None:
        output = spec.model_name(f"{expert.name}-seed-{seed}")
        return train(spec.start, ref, {**expert.train, "seed": seed}, output, spec, context)
    if expert.seeds is None:
        return train(spec.start, ref, expert.train, sft_model(spec, expert), spec, context)
    runs = [spec.model_name(f"{expert.name}-seed-{s}") for s in expert.seeds]
    weights = [1.0 / len(runs)] * len(runs)
    name = sft_model(spec, expert)
    linear_merge(context, name, runs, weights)
    return {"model": name, "experts": runs, "weights": weights, "dataset": ref}


def prefer(expert: ExpertStep, spec: LoopSpec, state: LoopState, context: LoopContext) -> dict[str, Any]:
    """Preference training of an expert from its SFT model, into the expert's own name."""
    assert expert.preference is not None
    ref = dataset_ref(expert.preference.dataset, spec, state)
    base = sft_model(spec, expert)
    return train(base, ref, expert.preference.train, spec.model_name(expert.name), spec, context)


def polish_train(
    round_: PolishRound, label: str, newest: str, spec: LoopSpec, state: LoopState, context: LoopContext
) -> dict[str, Any]:
    """Train the newest model on a polish round's data (its own pipeline's, or as named)."""
    if round_.pipeline is not None:
        ref = state.result(f"polish:{label}:data")["outputs"][split_ref(round_.dataset)[0]]
    else:
        ref = dataset_ref(round_.dataset, spec, state)
    return train(newest, ref, round_.train, spec.model_name(f"polish-{label}"), spec, context)


def train(
    base: str, ref: str, fields: dict[str, Any], output: str, spec: LoopSpec, context: LoopContext
) -> dict[str, Any]:
    """Train `base` on the dataset version `ref` into the stored model `output`, unless the
    dataset overlaps an evaluation set beyond the gate, or `output` is stored already (adopted
    when it was trained on `ref` by a run killed before it saved the step)."""
    from eval_sets.contamination import check_dataset
    from trainer.config import TrainConfig
    from trainer.run import prepare_training, run_training

    version = context.registry.open(ref)
    report = check_dataset(version)
    report.refuse_above(spec.gates.max_contamination)
    if context.store.has(output):
        record = context.store.record(output)
        if record.get("lineage", {}).get("datasets") == [version.ref]:
            return {"model": output, "base": base, "dataset": version.ref, "adopted": True}
        raise LoopStepError(f"a model named {output!r} is stored but was not trained on {version.ref}")
    config = TrainConfig.model_validate({**fields, "model": base, "dataset": version.ref, "output": output})
    result = run_training(
        prepare_training(config, context.registry, context.store), context.store, log=context.log
    )
    return {
        "model": result.name,
        "base": base,
        "dataset": version.ref,
        "contaminated_rows": report.flagged_rows,
        "metrics": result.metrics,
    }


def interpolate(spec: LoopSpec, polished: str, context: LoopContext) -> dict[str, Any]:
    """WARP's linear interpolation toward the start of polish: base + eta * (polished - base)."""
    assert spec.polish is not None and spec.polish.interpolation is not None
    eta, base, name = spec.polish.interpolation, merged_model(spec), spec.model_name("final")
    linear_merge(context, name, [polished, base], [eta, 1 - eta])
    return {"model": name, "experts": [polished, base], "weights": [eta, 1 - eta]}


def merge(spec: LoopSpec, without: str | None, state: LoopState, context: LoopContext) -> dict[str, Any]:
    """The soup of the experts (given or searched weights), or the soup without one expert."""
    assert spec.merge is not None
    experts = [e.name for e in spec.experts]
    weights = spec.merge.weights or [1.0 / len(experts)] * len(experts)
    if spec.merge.search is not None:
        if without is None:
            return search_soup(spec, weights, context)
        weights = state.result("merge")["weights"]  # leave-one-out around the searched soup
    if without is not None:
        kept = [i for i, name in enumerate(experts) if name != without]
        rest = sum(weights[i] for i in kept)
        experts, weights = [experts[i] for i in kept], [weights[i] / rest for i in kept]
    name = spec.model_name("soup" if without is None else f"without-{without}")
    linear_merge(context, name, [spec.model_name(e) for e in experts], weights)
    return {"model": name, "experts": experts, "weights": weights}


def linear_merge(context: LoopContext, name: str, models: list[str], weights: list[float]) -> None:
    """Store the linear merge `name` of stored `models`; or adopt the one a run killed before it
    saved its step stored, when its lineage shows the same models and weights.

    Raises:
        LoopStepError: a model called `name` is stored but is another merge.
    """
    from trainer.merging.schemes import merge_linear_to_store

    if not context.store.has(name):
        merge_linear_to_store(context.store, models, weights, name=name)
        return
    stored = context.store.record(name).get("lineage", {}).get("merge") or {}
    same_models = [identity.split("#")[0] for identity in stored.get("models", [])] == models
    same_weights = len(stored.get("weights", [])) == len(weights) and all(
        abs(a - b) < 1e-6 for a, b in zip(stored["weights"], weights, strict=True)
    )
    if not (same_models and same_weights):
        raise LoopStepError(f"a model named {name!r} is stored but is not the merge of {models} by {weights}")


def search_soup(spec: LoopSpec, initial: list[float], context: LoopContext) -> dict[str, Any]:
    """The soup with weights searched on the dev splits of the experts' domains."""
    from loop.gates import PRIMARY_METRICS, primary
    from trainer.merging.config import Expert, SearchConfig
    from trainer.merging.search import run_search

    assert spec.merge is not None and spec.merge.search is not None
    search = spec.merge.search
    domains = sorted({e.domain for e in spec.experts})
    dev = spec.evaluation.model_copy(update={"suites": domains, "limit": search.limit, "split": "dev"})

    def dev_scores(model_path: Path) -> dict[str, float]:
        summary = context.evaluate(str(model_path), dev)
        return {domain: primary(summary, domain)[0] for domain in domains}

    name = spec.model_name("soup")
    if context.store.has(name):  # registered by a run killed before it saved the step
        return {"model": name, "weights": context.store.record(name)["lineage"]["merge"]["weights"]}
    config = SearchConfig(
        experts=[Expert(model=spec.model_name(e.name), domain=e.domain) for e in spec.experts],
        evaluator="loop.evaluation:evaluate_summary",  # recorded in lineage; called as dev_scores
        initial_weights=initial,
        rounds=search.rounds,
        candidates_per_round=search.candidates_per_round,
        seed=search.seed,
        output=name,
    )
    result = run_search(config, context.store, dev_scores, log=context.log)
    return {
        "model": name,
        "experts": [e.name for e in spec.experts],
        "weights": list(result.best.weights),
        "dev_scores": result.best.scores,
        "dev_metrics": {d: PRIMARY_METRICS[d] for d in domains},
        "evaluations": result.evaluations,
    }
