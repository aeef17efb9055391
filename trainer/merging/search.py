"""Merge-weight search: heuristic up-weighting of lagging domains plus perturbations around the best.

Command A's report (section 3.4.3.1) searches linear-merge weights "using a combination of
heuristics (i.e., upweight experts for domains in which a merge candidate is underperforming) and
brute force search (i.e., perturb the weights for each expert, centred around the current
candidate)", and notes that merging is cheap while evaluating is expensive (3.4.3.3). So the
search spends a fixed budget of evaluations:

1. Targets tau_d per domain: given in the config, or the score of the domain's own expert
   (each expert evaluated once; the best expert of a domain sets its target).
2. Start from w_0 (uniform unless given) and evaluate it; optionally the K leave-one-out merges.
3. Each round, around the best candidate w* with scores s:
   - relative deficit  delta_d = (tau_d - s_d) / max(|tau_d|, eps), centred over experts:
     z_i = delta_{d(i)} - mean_j delta_{d(j)};
   - heuristic candidate  w_i <- w*_i * exp(step * z_i), renormalised (experts of lagging
     domains gain weight, multiplicatively, so weights stay positive and on the simplex);
   - the other candidates  w ~ Dirichlet(concentration * w* + 0.1), whose mean is close to w*;
   - each candidate is merged, evaluated, and kept as w* if its mean score over domains beats it.

Everything random comes from one seeded generator, so the same seed and a deterministic evaluator
give the same search. Candidates with the same weights are evaluated once.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_store import ModelStore
from trainer.merging.config import MergeError, SearchConfig
from trainer.merging.linear import LinearMergePlan, MergeResult, execute_linear, plan_linear
from trainer.merging.schemes import MergeJob, RegisteredMerge, leave_one_out_weights, register_folder

Evaluator = Callable[[Path], Mapping[str, float]]
DIRICHLET_FLOOR = 0.1  # keeps every expert reachable, even one whose weight went to 0


@dataclass(frozen=True)
class Candidate:
    """One evaluated merge: its weights, scores per domain, mean score and how it was proposed."""

    weights: tuple[float, ...]
    scores: dict[str, float]
    mean: float
    origin: str  # initial, leave_one_out, upweight, perturb
    round: int


@dataclass
class SearchResult:
    """The best candidate, every evaluated candidate in order, the targets, and the output."""

    best: Candidate
    history: list[Candidate]
    targets: dict[str, float]
    evaluations: int
    registered: RegisteredMerge | None = None
    expert_scores: list[dict[str, float]] = field(default_factory=list)


def load_evaluator(spec: str) -> Evaluator:
    """Import `module:function` or `path/to/file.py:function`."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise MergeError(f"evaluator {spec!r} is not `module:function` or `file.py:function`")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser().resolve()
            module_spec = importlib.util.spec_from_file_location(f"assay_evaluator_{path.stem}", path)
            if module_spec is None or module_spec.loader is None or not path.is_file():
                raise MergeError(f"evaluator file {target} does not exist")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as err:
        raise MergeError(f"cannot import evaluator module {target!r}: {err}") from err
    function = getattr(module, attr, None)
    if not callable(function):
        raise MergeError(f"evaluator {spec!r}: {target} has no function {attr!r}")
    return function


def upweight(
    weights: np.ndarray,
    domains: Sequence[str],
    scores: Mapping[str, float],
    targets: Mapping[str, float],
    step: float,
) -> np.ndarray:
    """w_i * exp(step * z_i), renormalised, z_i the centred relative deficit of expert i's domain."""
    deficit = np.array([(targets[d] - scores[d]) / max(abs(targets[d]), 1e-9) for d in domains])
    z = deficit - deficit.mean()
    updated = weights * np.exp(step * z)
    return updated / updated.sum()


def perturb(weights: np.ndarray, rng: np.random.Generator, concentration: float) -> np.ndarray:
    """A Dirichlet draw centred near `weights` (concentration * w + a small floor)."""
    return rng.dirichlet(concentration * weights + DIRICHLET_FLOOR)


def _check_scores(scores: Mapping[str, float], domains: Sequence[str], source: str) -> dict[str, float]:
    missing = [d for d in dict.fromkeys(domains) if d not in scores]
    if missing:
        raise MergeError(f"the evaluator returned no score for domain(s) {missing} on {source}")
    values = {d: float(scores[d]) for d in dict.fromkeys(domains)}
    if not all(math.isfinite(v) for v in values.values()):
        raise MergeError(f"the evaluator returned a non-finite score on {source}: {values}")
    return values


class _Searcher:
    """State of one search: the plan, the work folder, the cache and the best folder on disk."""

    def __init__(
        self, plan: LinearMergePlan, domains: list[str], evaluate: Evaluator, work_dir: Path
    ) -> None:
        self.plan = plan
        self.domains = domains
        self.evaluate = evaluate
        self.work_dir = work_dir
        self.cache: dict[tuple[float, ...], dict[str, float]] = {}
        self.history: list[Candidate] = []
        self.best: Candidate | None = None
        self.best_result: MergeResult | None = None
        self.evaluations = 0

    def mean(self, scores: Mapping[str, float]) -> float:
        unique = list(dict.fromkeys(self.domains))
        return math.fsum(scores[d] for d in unique) / len(unique)

    @staticmethod
    def key(weights: Sequence[float]) -> tuple[float, ...]:
        """Normalised weights rounded to 1e-12: the cache key and the weights actually merged."""
        values = np.asarray(weights, dtype=np.float64)
        return tuple(round(float(w), 12) for w in values / values.sum())

    def consider(self, weights: Sequence[float], origin: str, round_: int) -> Candidate:
        """Merge and evaluate a candidate (unless seen), and keep it if it beats the best."""
        key = self.key(weights)
        result = None
        if key not in self.cache:
            folder = self.work_dir / f"candidate-{len(self.history):04d}"
            result = execute_linear(self.plan.with_weights(list(key), normalize=True), folder)
            self.evaluations += 1
            self.cache[key] = _check_scores(self.evaluate(folder), self.domains, f"candidate {key}")
        scores = self.cache[key]
        candidate = Candidate(key, scores, self.mean(scores), origin, round_)
        self.history.append(candidate)
        if self.best is None or candidate.mean > self.best.mean:
            if self.best_result is not None:
                shutil.rmtree(self.best_result.path, ignore_errors=True)
            self.best, self.best_result = candidate, result
        elif result is not None:
            shutil.rmtree(result.path, ignore_errors=True)
        return candidate


def search_weights(
    experts: Sequence[Path],
    domains: Sequence[str],
    evaluate: Evaluator,
    work_dir: Path,
    *,
    targets: Mapping[str, float] | None = None,
    initial_weights: Sequence[float] | None = None,
    rounds: int = 4,
    candidates_per_round: int = 4,
    concentration: float = 100.0,
    step: float = 1.0,
    leave_one_out: bool = False,
    seed: int = 0,
    dtype: str | None = None,
    max_shard_size: int = 5 * 10**9,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[SearchResult, MergeResult]:
    """Search linear-merge weights of `experts` that maximise the mean score over domains.

    Args:
        experts: HF folders of the experts (validated together once, before any merge).
        domains: the domain of each expert, keys of the evaluator's scores.
        evaluate: `evaluate(model_path) -> {domain: score}`, higher is better.
        work_dir: folder for candidate merges (created; the best candidate stays in it).
        targets: score to reach per domain; missing ones come from evaluating the experts.
        initial_weights: the first candidate; default uniform.
        rounds, candidates_per_round: the evaluation budget after the initial candidate(s).
        concentration: Dirichlet concentration; larger keeps perturbations closer to the best.
        step: step size of the heuristic up-weighting.
        leave_one_out: also evaluate the K leave-one-out merges in round 0.
        seed: seed of the perturbations.
        dtype, max_shard_size: output settings of every candidate merge.
        log: receives one line per evaluated candidate.

    Returns:
        The search result and the best candidate's merge folder (inside `work_dir`).
    """
    if len(experts) != len(domains):
        raise MergeError("one domain per expert is needed")
    count = len(experts)
    start = np.asarray(
        initial_weights if initial_weights is not None else [1.0 / count] * count, dtype=np.float64
    )
    plan = plan_linear(experts, list(start / start.sum()), dtype=dtype, max_shard_size=max_shard_size)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    goals = dict(targets or {})
    expert_scores: list[dict[str, float]] = []
    if any(d not in goals for d in domains):  # evaluate the experts themselves once
        for expert, domain in zip(experts, domains, strict=True):
            scores = _check_scores(evaluate(Path(expert)), domains, str(expert))
            expert_scores.append(scores)
            log(f"expert {Path(expert).name} ({domain}): {scores[domain]:.4f}")
        for domain in dict.fromkeys(domains):
            if domain not in goals:
                goals[domain] = max(
                    s[domain] for s, d in zip(expert_scores, domains, strict=True) if d == domain
                )
    searcher = _Searcher(plan, list(domains), evaluate, work_dir)
    rng = np.random.default_rng(seed)

    def report(candidate: Candidate) -> None:
        weights = ", ".join(f"{w:.3f}" for w in candidate.weights)
        log(f"round {candidate.round} {candidate.origin:13s} [{weights}] mean {candidate.mean:.4f}")

    report(searcher.consider(start, "initial", 0))
    if leave_one_out:
        for left_out, rest in enumerate(leave_one_out_weights(list(start))):
            weights = rest[:left_out] + [0.0] + rest[left_out:]
            report(searcher.consider(weights, "leave_one_out", 0))
    for round_ in range(1, rounds + 1):
        assert searcher.best is not None
        centre = np.asarray(searcher.best.weights)
        proposals: list[tuple[str, np.ndarray]] = []
        heuristic = upweight(centre, domains, searcher.best.scores, goals, step)
        if searcher.key(heuristic) not in searcher.cache:  # the best did not move: perturb instead
            proposals.append(("upweight", heuristic))
        while len(proposals) < candidates_per_round:
            proposals.append(("perturb", perturb(centre, rng, concentration)))
        for origin, weights in proposals:
            report(searcher.consider(weights, origin, round_))
    assert searcher.best is not None
    if searcher.best_result is None:  # the best came from the cache of an earlier, deleted folder
        searcher.best_result = execute_linear(
            plan.with_weights(list(searcher.best.weights), normalize=True), work_dir / "best"
        )
    result = SearchResult(searcher.best, searcher.history, goals, searcher.evaluations, None, expert_scores)
    return result, searcher.best_result


def run_search(
    config: SearchConfig,
    store: ModelStore,
    evaluate: Evaluator | None = None,
    *,
    log: Callable[[str], None] = lambda _: None,
) -> SearchResult:
    """Run a SearchConfig and register the best merge in the store with its lineage and history.

    Args:
        config: the search config.
        store: resolves the experts and receives the best merge under `config.output`.
        evaluate: the evaluation function; default: the one `config.evaluator` names.
        log: receives progress lines.
    """
    if store.path(config.output).exists():
        raise MergeError(f"a model named {config.output!r} is already stored; choose another `output`")
    resolved = [store.resolve(e.model) for e in config.experts]
    for model in resolved:
        if model.gguf_file:
            raise MergeError(
                f"{model.ref}: GGUF files cannot be merged; store the model as safetensors first"
            )
    evaluate = evaluate or load_evaluator(config.evaluator)
    targets: dict[str, float] = {}
    for expert in config.experts:
        if expert.target is not None:
            targets[expert.domain] = max(targets.get(expert.domain, -math.inf), expert.target)
    store.root.mkdir(parents=True, exist_ok=True)
    work_dir = store.root / f".{config.output}.search"
    shutil.rmtree(work_dir, ignore_errors=True)
    try:
        result, best = search_weights(
            [m.path for m in resolved],
            [e.domain for e in config.experts],
            evaluate,
            work_dir,
            targets=targets,
            initial_weights=config.initial_weights,
            rounds=config.rounds,
            candidates_per_round=config.candidates_per_round,
            concentration=config.concentration,
            step=config.step,
            leave_one_out=config.leave_one_out,
            seed=config.seed,
            dtype=config.dtype,
            max_shard_size=int(config.max_shard_size),
            log=log,
        )
        job = MergeJob(config.output, "search", tuple(resolved), result.best.weights)
        metrics = {
            "scores": result.best.scores,
            "mean_score": result.best.mean,
            "targets": result.targets,
            "evaluations": result.evaluations,
            "history": [
                {
                    "weights": list(c.weights),
                    "scores": c.scores,
                    "mean": c.mean,
                    "origin": c.origin,
                    "round": c.round,
                }
                for c in result.history
            ],
        }
        result.registered = register_folder(store, job, best, config.model_dump(mode="json"), metrics=metrics)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result
