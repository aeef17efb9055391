"""The multilingual examples: the m-IFEval evaluation split is fixed, recorded in the repo and
never in the generation prompts; the example specs load and expand to the intended stages."""

import importlib.util
import json
from pathlib import Path

from datagen.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "multilingual"


def register_module():  # noqa: ANN201 - the example script, imported as a module
    spec = importlib.util.spec_from_file_location("register_m_ifeval", EXAMPLES / "register_m_ifeval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_heldout_and_dev_splits_are_recorded_and_never_generated_from(shared_data: Path) -> None:
    module = register_module()
    train, heldout, keys, dev = module.split(shared_data)
    assert json.loads(module.HELDOUT_FILE.read_text()) == keys  # the recorded splits are the rule's
    assert json.loads(module.DEV_FILE.read_text()) == dev
    held = {(r["language"], r["key"]) for r in heldout}
    generated = {(r["language"], r["key"]) for r in train}
    assert not held & generated
    assert not {(language, key) for language, ks in dev.items() for key in ks} & (generated | held)
    assert {language: len(k) for language, k in keys.items()} == {"en": 216, "es": 46, "fr": 94, "ja": 69}
    assert {language: len(k) for language, k in dev.items()} == {"en": 81, "es": 17, "fr": 35, "ja": 26}
    assert [r["language"] for r in train[:8]] == ["en", "es", "fr", "ja"] * 2  # a limit takes every language


def test_example_specs_expand() -> None:
    arbitrage = load_spec(EXAMPLES / "arbitrage.yaml").spec
    assert [s.type for s in arbitrage.stages] == [
        "render",
        "teacher_pool",
        "language_check",
        "score",
        "rank_select",
    ]
    assert [t.name for t in arbitrage.stages[1].teachers] == ["smol-plain", "smol-native"]
    assert arbitrage.source.dataset == "m-ifeval-prompts@1"
    baseline = load_spec(EXAMPLES / "single_teacher.yaml").spec
    assert baseline.stages[1] == arbitrage.stages[1]  # the same teacher calls: the cache serves them
    assert baseline.stages[-1].only_teacher == "smol-plain"
    bon = load_spec(EXAMPLES / "best_of_n_rm.yaml").spec
    assert bon.stages[-1].rank_by == "both" and bon.stages[-1].drop_disagreements
