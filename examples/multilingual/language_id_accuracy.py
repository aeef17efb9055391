"""Measure language-ID accuracy on the m-IFEval prompts, by language and library.

Each prompt's label is the language of its file (en, es, fr, ja). Run from the project root:

    .venv/bin/python examples/multilingual/language_id_accuracy.py [--chars 60]

`--chars N` cuts each prompt to its first N characters (short texts). Prints accuracy per
language and backend, unrestricted (every language the library knows) and restricted to the
four, and the time per text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from judges.language_id import BACKENDS, LanguageIdentifier, strip_code_and_quotes

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ifeval"
LANGUAGES = ["en", "es", "fr", "ja"]


def load(chars: int | None) -> list[tuple[str, str]]:
    """(text, language) for every m-IFEval prompt."""
    rows = []
    for language in LANGUAGES:
        for line in (DATA / f"m-ifeval_{language}_input_data.jsonl").read_text().splitlines():
            text = strip_code_and_quotes(json.loads(line)["prompt"])
            rows.append((text[:chars] if chars else text, language))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=None, help="cut prompts to this many characters")
    args = parser.parse_args()
    rows = load(args.chars)
    print(f"{len(rows)} prompts, cut to {args.chars or 'full'} characters")
    print(f"{'backend':<24}" + "".join(f"{code:>8}" for code in LANGUAGES) + f"{'all':>8}{'ms/text':>9}")
    for backend in BACKENDS:
        for restricted in (False, True):
            identifier = LanguageIdentifier(backend, LANGUAGES if restricted else None)
            try:
                identifier.detect("warm up the model")
            except ImportError as err:  # lingua is not a project dependency: pip install it to compare
                print(f"{backend}: not installed ({err})")
                break
            started = time.perf_counter()
            hits = {code: [0, 0] for code in LANGUAGES}
            for text, language in rows:
                detected, _ = identifier.detect(text)
                hits[language][0] += detected == language
                hits[language][1] += 1
            ms = (time.perf_counter() - started) * 1000 / len(rows)
            total = sum(h[0] for h in hits.values()) / len(rows)
            name = f"{backend}{' (4 langs)' if restricted else ''}"
            cells = "".join(f"{h[0] / h[1]:>8.3f}" for h in hits.values())
            print(f"{name:<24}{cells}{total:>8.3f}{ms:>9.2f}")


if __name__ == "__main__":
    main()
