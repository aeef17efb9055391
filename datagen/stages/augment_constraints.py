# ruff: noqa: E501 - the wording table: one sentence per line reads best
"""Verifiable requirements to inject into prompts: IFEval instruction ids that `judges.ifeval`
checks, each with seeded kwargs and its wording in six languages.

`inject` picks requirements for one prompt from a seeded generator: only ids the catalogue
holds, none the row already has, none that conflict (a whole-response JSON answer cannot also
end with a phrase). The picked ids and kwargs are appended to the row's IFEval columns
(`instruction_id_list`, `kwargs`), so `ifeval_verify` verifies the injected requirement like any
other; the wording is appended to the prompt. Nothing here calls a model.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from judges.ifeval import SUPPORTED, canonical_id

LANGUAGES = ("en", "fr", "es", "de", "pt", "it")

# Every kwarg a `judges.ifeval` checker reads, with its Arrow type: the struct the injected
# `kwargs` column is written in (a row's existing kwargs are carried over into it).
KWARG_TYPES: dict[str, pa.DataType] = {
    **{
        name: pa.int64()
        for name in (
            "capital_frequency", "frequency", "kanji_limit", "let_frequency", "nth_paragraph",
            "num_bullets", "num_highlights", "num_items", "num_letters", "num_paragraphs",
            "num_placeholders", "num_sections", "num_sentences", "num_words",
        )
    },
    **{
        name: pa.string()
        for name in (
            "capital_relation", "let_relation", "relation", "end_phrase", "ending", "first_word",
            "forbidden_char", "keyword", "language", "letter", "postscript_marker",
            "prompt_to_repeat", "section_spliter", "start_phrase",
            "word_to_accentuate",  # a mapping, kept as a JSON object string (judges accept it)
        )
    },
    "forbidden_words": pa.list_(pa.string()),
    "keywords": pa.list_(pa.string()),
}  # fmt: skip
KWARGS_TYPE = pa.list_(pa.struct(list(KWARG_TYPES.items())))

Kwargs = dict[str, Any]


@dataclass(frozen=True)
class Requirement:
    """One injectable instruction: how to draw its kwargs, how to say it, what the saying must keep.

    `wording[language]` is a format string over the kwargs; `markers(kwargs, language)` are the
    strings a model's rephrasing of the prompt must still contain (numbers, phrases, markup),
    so the requirement is still asked for.
    """

    instruction_id: str
    draw: Callable[[random.Random, str], Kwargs]
    wording: Mapping[str, str]
    markers: Callable[[Kwargs, str], list[str]]


def _none(rng: random.Random, language: str) -> Kwargs:
    return {}


def _fixed(*markers: str) -> Callable[[Kwargs, str], list[str]]:
    return lambda kwargs, language: list(markers)


def _word_limit(rng: random.Random, language: str) -> Kwargs:
    relation = rng.choice(["less than", "at least"])
    return {
        "relation": relation,
        "num_words": rng.choice([50, 80, 100, 150] if relation == "less than" else [60, 100, 150]),
    }


_END_PHRASES = {
    "en": ["Is there anything else I can help with?", "Hope this helps!"],
    "fr": ["Bonne journée !"],
    "es": ["¡Que tengas un buen día!"],
    "de": ["Viel Erfolg!"],
    "pt": ["Boa sorte!"],
    "it": ["Buona giornata!"],
}
_COMMA = {"en": "comma", "fr": "virgule", "es": "coma", "de": "komma", "pt": "vírgula", "it": "virgola"}

REQUIREMENTS: dict[str, Requirement] = {
    r.instruction_id: r
    for r in [
        Requirement(
            "punctuation:no_comma",
            _none,
            {
                "en": "Do not use any commas in your response.",
                "fr": "N'utilise aucune virgule dans ta réponse.",
                "es": "No uses ninguna coma en tu respuesta.",
                "de": "Verwende in deiner Antwort keine Kommas.",
                "pt": "Não use nenhuma vírgula na sua resposta.",
                "it": "Non usare alcuna virgola nella tua risposta.",
            },
            lambda kwargs, language: [_COMMA[language]],
        ),
        Requirement(
            "length_constraints:number_words",
            _word_limit,
            {
                "en": "Answer in {words_en} {num_words} words.",
                "fr": "Réponds en {words_fr} {num_words} mots.",
                "es": "Responde con {words_es} {num_words} palabras.",
                "de": "Antworte mit {words_de} {num_words} Wörtern.",
                "pt": "Responda com {words_pt} {num_words} palavras.",
                "it": "Rispondi con {words_it} {num_words} parole.",
            },
            lambda kwargs, language: [str(kwargs["num_words"])],
        ),
        Requirement(
            "detectable_format:number_bullet_lists",
            lambda rng, language: {"num_bullets": rng.randint(3, 5)},
            {
                "en": 'Your answer must contain exactly {num_bullets} bullet points, each on its own line starting with "* ".',
                "fr": 'Ta réponse doit contenir exactement {num_bullets} puces, chacune sur une ligne qui commence par "* ".',
                "es": 'Tu respuesta debe contener exactamente {num_bullets} viñetas, cada una en una línea que empiece por "* ".',
                "de": 'Deine Antwort muss genau {num_bullets} Aufzählungspunkte enthalten, jeder in einer eigenen Zeile, die mit "* " beginnt.',
                "pt": 'Sua resposta deve conter exatamente {num_bullets} marcadores, cada um em uma linha começando com "* ".',
                "it": 'La tua risposta deve contenere esattamente {num_bullets} punti elenco, ciascuno su una riga che inizia con "* ".',
            },
            lambda kwargs, language: [str(kwargs["num_bullets"]), "*"],
        ),
        Requirement(
            "detectable_format:title",
            _none,
            {
                "en": "Give your answer a title wrapped in double angular brackets, such as <<my title>>.",
                "fr": "Donne à ta réponse un titre entre doubles chevrons, par exemple <<mon titre>>.",
                "es": "Pon a tu respuesta un título entre dobles corchetes angulares, por ejemplo <<mi título>>.",
                "de": "Gib deiner Antwort einen Titel in doppelten spitzen Klammern, zum Beispiel <<mein Titel>>.",
                "pt": "Dê à sua resposta um título entre parênteses angulares duplos, por exemplo <<meu título>>.",
                "it": "Dai alla tua risposta un titolo tra doppie parentesi angolari, ad esempio <<il mio titolo>>.",
            },
            _fixed("<<"),
        ),
        Requirement(
            "detectable_content:postscript",
            lambda rng, language: {"postscript_marker": "P.S."},
            {
                "en": "At the end of your response, add a postscript starting with P.S.",
                "fr": "À la fin de ta réponse, ajoute un post-scriptum commençant par P.S.",
                "es": "Al final de tu respuesta, añade una posdata que empiece por P.S.",
                "de": "Füge am Ende deiner Antwort ein Postskriptum hinzu, das mit P.S. beginnt.",
                "pt": "No final da sua resposta, adicione um pós-escrito começando com P.S.",
                "it": "Alla fine della tua risposta, aggiungi un poscritto che inizi con P.S.",
            },
            _fixed("P.S."),
        ),
        Requirement(
            "startend:end_checker",
            lambda rng, language: {"end_phrase": rng.choice(_END_PHRASES[language])},
            {
                "en": 'End your response with the exact phrase "{end_phrase}", with nothing after it.',
                "fr": 'Termine ta réponse par la phrase exacte "{end_phrase}", sans rien après.',
                "es": 'Termina tu respuesta con la frase exacta "{end_phrase}", sin nada después.',
                "de": 'Beende deine Antwort mit genau dem Satz "{end_phrase}" und schreibe danach nichts mehr.',
                "pt": 'Termine sua resposta com a frase exata "{end_phrase}", sem nada depois.',
                "it": 'Termina la tua risposta con la frase esatta "{end_phrase}", senza nulla dopo.',
            },
            lambda kwargs, language: [kwargs["end_phrase"]],
        ),
        Requirement(
            "detectable_format:number_highlighted_sections",
            lambda rng, language: {"num_highlights": rng.randint(2, 3)},
            {
                "en": "Highlight at least {num_highlights} sections of your answer with markdown, like *highlighted section*.",
                "fr": "Mets en évidence au moins {num_highlights} passages de ta réponse avec du markdown, comme *passage en évidence*.",
                "es": "Resalta al menos {num_highlights} secciones de tu respuesta con markdown, como *sección resaltada*.",
                "de": "Hebe mindestens {num_highlights} Abschnitte deiner Antwort mit Markdown hervor, etwa *hervorgehobener Abschnitt*.",
                "pt": "Destaque pelo menos {num_highlights} seções da sua resposta com markdown, como *seção destacada*.",
                "it": "Evidenzia almeno {num_highlights} sezioni della tua risposta con il markdown, come *sezione evidenziata*.",
            },
            lambda kwargs, language: [str(kwargs["num_highlights"]), "*"],
        ),
        Requirement(
            "detectable_format:json_format",
            _none,
            {
                "en": "Wrap your entire output in JSON format; you may use a markdown code block.",
                "fr": "Rédige toute ta réponse au format JSON ; tu peux utiliser un bloc de code markdown.",
                "es": "Escribe toda tu respuesta en formato JSON; puedes usar un bloque de código markdown.",
                "de": "Gib deine gesamte Antwort im JSON-Format aus; ein Markdown-Codeblock ist erlaubt.",
                "pt": "Escreva toda a sua resposta em formato JSON; você pode usar um bloco de código markdown.",
                "it": "Scrivi tutta la tua risposta in formato JSON; puoi usare un blocco di codice markdown.",
            },
            _fixed("JSON"),
        ),
    ]
}  # fmt: skip

# "less than" / "at least" in each language, filled into number_words' wording.
_RELATION_WORDS = {
    "less than": {"en": "fewer than", "fr": "moins de", "es": "menos de", "de": "weniger als", "pt": "menos de", "it": "meno di"},
    "at least": {"en": "at least", "fr": "au moins", "es": "al menos", "de": "mindestens", "pt": "pelo menos", "it": "almeno"},
}  # fmt: skip

# The response's whole shape: JSON cannot be combined with anything else that shapes the text.
_SHAPES = {
    "detectable_format:json_format",
    "detectable_format:title",
    "detectable_content:postscript",
    "startend:end_checker",
    "startend:start_checker",
    "startend:quotation",
    "detectable_format:number_bullet_lists",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:constrained_response",
    "length_constraints:number_paragraphs",
    "length_constraints:nth_paragraph_first_word",
    "combination:two_responses",
    "combination:repeat_prompt",
    "punctuation:no_comma",
    "change_case:english_capital",
    "change_case:english_lowercase",
}


def conflicts(a: str, b: str) -> bool:
    """Whether instructions `a` and `b` (any ids, canonicalised here) cannot be asked together."""
    a, b = canonical_id(a), canonical_id(b)
    if a == b:
        return True
    json_id = "detectable_format:json_format"
    return (a == json_id and b in _SHAPES) or (b == json_id and a in _SHAPES)


def wording(requirement: Requirement, kwargs: Kwargs, language: str) -> str:
    """The requirement said in `language` with its kwargs filled in."""
    words = {
        f"words_{code}": _RELATION_WORDS.get(kwargs.get("relation", ""), {}).get(code, "")
        for code in LANGUAGES
    }
    return requirement.wording[language].format(**kwargs, **words)


def normalise_kwargs(kwargs: Mapping[str, Any] | None) -> Kwargs:
    """A row's kwargs for one instruction in `KWARG_TYPES`' shape: None values dropped, a mapping
    kept as JSON.

    Raises:
        ValueError: a kwarg no checker reads (it would be lost silently otherwise).
    """
    out: Kwargs = {}
    for name, value in (kwargs or {}).items():
        if value is None:
            continue
        if name not in KWARG_TYPES:
            raise ValueError(
                f"kwarg {name!r} is not one judges.ifeval reads; known: {', '.join(sorted(KWARG_TYPES))}"
            )
        out[name] = json.dumps(value, ensure_ascii=False) if isinstance(value, Mapping) else value
    return out


@dataclass(frozen=True)
class Injection:
    """What `inject` picked: the ids and kwargs added, and their wording."""

    instruction_ids: list[str]
    kwargs: list[Kwargs]
    phrases: list[str]


def row_rng(seed: int, key: str) -> random.Random:
    """The generator of one row: the same seed and row key give the same draws on any machine."""
    return random.Random(f"{seed}\x00{key}")


def inject(
    rng: random.Random,
    language: str,
    existing: Sequence[str],
    allowed: Sequence[str],
    count: int,
) -> Injection:
    """Pick up to `count` requirements from `allowed` that fit beside `existing` ids.

    Args:
        rng: The row's generator (`row_rng`).
        language: The prompt's language (one of `LANGUAGES`).
        existing: Instruction ids the row already carries.
        allowed: Catalogue ids to choose from.
        count: How many to add.

    Returns:
        The picked ids, their kwargs and wording, in the order drawn (possibly fewer than
        `count`, or none, when the row's own instructions leave no compatible one).
    """
    picked: list[str] = []
    kwargs: list[Kwargs] = []
    phrases: list[str] = []
    pool = sorted(allowed)
    rng.shuffle(pool)
    for instruction_id in pool:
        if len(picked) == count:
            break
        if any(conflicts(instruction_id, other) for other in [*existing, *picked]):
            continue
        requirement = REQUIREMENTS[instruction_id]
        drawn = requirement.draw(rng, language)
        picked.append(instruction_id)
        kwargs.append(drawn)
        phrases.append(wording(requirement, drawn, language))
    return Injection(picked, kwargs, phrases)


def catalogue_problems() -> list[str]:
    """Catalogue entries judges.ifeval cannot verify or that lack a language's wording (a test
    keeps this empty)."""
    return [
        instruction_id
        for instruction_id, requirement in REQUIREMENTS.items()
        if instruction_id not in SUPPORTED or set(requirement.wording) != set(LANGUAGES)
    ]
