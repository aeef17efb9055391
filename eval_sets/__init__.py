"""The fixed evaluation sets: what is measured, and what training data must never contain.

Each set is read from the public data folder (`assay.settings.eval_data_dir()`, `ASSAY_EVAL_DATA`)
through one loader that returns typed items with stable ids. Splits are fixed and recorded in
this package (`splits/`), never drawn at run time, so every run measures the same items.

- `ifeval`: the held-out 40 % of m-IFEval (en, es, fr, ja; `splits/m_ifeval_heldout.json`);
  the other 60 % may be generated from, less the dev split (`splits/m_ifeval_dev.json`).
- `humaneval`: all 164 HumanEval problems; its dev split is 87 of MBPP's validation problems
  (task ids 511-600) posed as HumanEval problems (`humaneval_dev`, `splits/humaneval_dev.json`).
- `mgsm`: 200 of the 250 MGSM problems in each of its 11 languages; its dev split is the other
  50, the same problems in every language (`dev_splits`, `splits/mgsm_dev.json`).
- `xstest`: 360 of XSTest's prompts (200 safe, 160 unsafe); its dev split is the other fifth of
  every type, contrast pairs together (50 safe, 40 unsafe; `dev_splits`, `splits/xstest_dev.json`).
- `leval`: LEval's questions (decontamination only; no suite scores them yet).

Dev splits (`load_ifeval(split="dev")`, `load_humaneval(split="dev")`, `load_mgsm(split="dev")`,
`load_xstest(split="dev")`; the sets in `DEV_SPLITS`) are for choices such as the loop's merge
weights; the test splits only report. Both kinds are in the decontamination texts.

`identity(name)` names the exact bytes a set was read from (files and split, sha256), so a
result can record which version of a set it measured; `identity(name, split="dev")` names a
dev split (`NAME:dev#sha256=...`).
"""

from eval_sets.loaders import (
    EVAL_SETS,
    EvalDataError,
    HumanEvalItem,
    IFEvalItem,
    MGSMItem,
    XSTestItem,
    identity,
    load_humaneval,
    load_ifeval,
    load_leval_questions,
    load_mgsm,
    load_xstest,
    texts_for_decontamination,
)

__all__ = [
    "EVAL_SETS",
    "EvalDataError",
    "HumanEvalItem",
    "IFEvalItem",
    "MGSMItem",
    "XSTestItem",
    "identity",
    "load_humaneval",
    "load_ifeval",
    "load_leval_questions",
    "load_mgsm",
    "load_xstest",
    "texts_for_decontamination",
]
