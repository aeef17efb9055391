"""Wall-clock bounds in tests, scaled by one factor from the environment.

Tests that cap a duration (a killed spin ends within 4 s, a cached call answers within 0.6 s)
write the bound for an idle machine and wrap it in `bound()`. A loaded runner (CI shares 2 cores)
sets `ASSAY_TIME_FACTOR`, e.g. 3, to give every cap the same slack without editing tests. Lower
bounds (a rate limiter must make a batch take at least so long) are not scaled.
"""

from __future__ import annotations

import os

FACTOR_ENV = "ASSAY_TIME_FACTOR"


def time_factor() -> float:
    """The factor from `ASSAY_TIME_FACTOR` (default 1; at least 1, so it only ever adds slack).

    Raises:
        ValueError: the variable is not a number of at least 1.
    """
    raw = os.environ.get(FACTOR_ENV, "").strip() or "1"
    try:
        factor = float(raw)
    except ValueError:
        raise ValueError(f"{FACTOR_ENV}={raw!r} is not a number") from None
    if not factor >= 1:
        raise ValueError(f"{FACTOR_ENV}={raw!r} must be at least 1")
    return factor


def bound(seconds: float) -> float:
    """`seconds` scaled by `ASSAY_TIME_FACTOR`: the cap to assert an elapsed time against."""
    return seconds * time_factor()
