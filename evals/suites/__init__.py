"""One module per evaluation suite, each a class satisfying `evals.base.Suite`, named in `SUITES`.

A suite class is built with keyword options only, every one optional: `max_tokens` (its reply
length limit; each suite has its own default), `data_dir` (the evaluation data folder), and
suite-specific ones (mgsm: `languages`). `evals.run` passes a class only the options its
constructor names.

`SUITE_GROUPS` names sets of suites (`core`); a group's member that is not registered (yet) is
left out of it.
"""

from evals.base import EvalError
from evals.suites.humaneval import HumanEvalSuite
from evals.suites.ifeval import IFEvalSuite
from evals.suites.mgsm import MGSMSuite
from evals.suites.xstest import XSTestSuite

SUITES: dict[str, type] = {
    "humaneval": HumanEvalSuite,
    "ifeval": IFEvalSuite,
    "mgsm": MGSMSuite,
    "xstest": XSTestSuite,
}

SUITE_GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("ifeval", "humaneval", "mgsm", "xstest"),
}


def resolve_suites(names: list[str]) -> list[str]:
    """Suite names with groups expanded, in order, each once.

    Raises:
        EvalError: A name that is neither a suite nor a group.
    """
    resolved: list[str] = []
    for name in names:
        if name in SUITE_GROUPS:
            members = [member for member in SUITE_GROUPS[name] if member in SUITES]
        elif name in SUITES:
            members = [name]
        else:
            known = ", ".join([*SUITES, *SUITE_GROUPS])
            raise EvalError(f"no evaluation suite {name!r}; suites and groups: {known}")
        resolved += [member for member in members if member not in resolved]
    return resolved
