"""Behaviour of the IFEval / M-IFEval instruction verifiers in judges.ifeval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import resources

from judges.ifeval import (
    SUPPORTED,
    UNSUPPORTED,
    InstructionArgumentError,
    InstructionError,
    UnsupportedInstructionError,
    canonical_id,
    check_instruction,
    verify_response,
)
from judges.ifeval.registry import ALIASES
from judges.ifeval.text import paragraphs_by_blank_line, paragraphs_by_divider, sentences, words

DATA_DIR = Path(__file__).parents[2].parent / "shared" / "data" / "ifeval"

PARAGRAPHS = {
    "en": (
        "The city council met on Tuesday evening to discuss the new public library. Many "
        "residents spoke in favour of longer opening hours, especially on weekends. The final "
        "decision will be announced next month after the budget has been reviewed."
    ),
    "fr": (
        "Le conseil municipal s'est réuni mardi soir pour discuter de la nouvelle bibliothèque. "
        "De nombreux habitants ont demandé des horaires d'ouverture plus longs, surtout le "
        "week-end. La décision finale sera annoncée le mois prochain, après l'examen du budget."
    ),
    "de": (
        "Der Stadtrat hat sich am Dienstagabend getroffen, um über die neue Bibliothek zu "
        "sprechen. Viele Bürger wünschten sich längere Öffnungszeiten, besonders am Wochenende. "
        "Die endgültige Entscheidung wird im nächsten Monat bekannt gegeben."
    ),
    "es": (
        "El ayuntamiento se reunió el martes por la noche para hablar de la nueva biblioteca. "
        "Muchos vecinos pidieron un horario de apertura más amplio, sobre todo los fines de "
        "semana. La decisión final se anunciará el próximo mes, después de revisar el "
        "presupuesto."
    ),
    "it": (
        "Il consiglio comunale si è riunito martedì sera per discutere della nuova biblioteca. "
        "Molti cittadini hanno chiesto orari di apertura più lunghi, soprattutto nel fine "
        "settimana. La decisione finale sarà annunciata il mese prossimo, dopo l'esame del "
        "bilancio."
    ),
    "pt": (
        "A câmara municipal reuniu-se na terça-feira à noite para discutir a nova biblioteca. "
        "Muitos moradores pediram um horário de funcionamento mais alargado, sobretudo aos fins "
        "de semana. A decisão final será anunciada no próximo mês, depois de o orçamento ser "
        "analisado."
    ),
}
EN_NO_COMMA = PARAGRAPHS["en"].replace(",", "")

# (instruction id, kwargs, a response that follows it, a response that does not)
CASES: list[tuple[str, dict[str, Any] | None, str, str]] = [
    ("punctuation:no_comma", {}, "No commas here.", "Yes, a comma."),
    (
        "length_constraints:number_words",
        {"relation": "less than", "num_words": 5},
        "one two three four",
        "one two three four five",
    ),
    (
        "length_constraints:number_words",
        {"relation": "at least", "num_words": 3},
        "Café crème brûlée",
        "crème brûlée",
    ),
    (
        "length_constraints:number_sentences",
        {"relation": "at least", "num_sentences": 3},
        "Dr. Smith arrived. He sat down! Was he tired?",
        "Dr. Smith met Mrs. Jones in the U.S. office. They talked.",
    ),
    (
        "es:length_constraints:number_sentences",
        {"relation": "como máximo", "num_sentences": 2},
        "¿Qué tal? Muy bien.",
        "Hola. ¿Qué tal? Muy bien.",
    ),
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 2},
        "First ***bold*** part.\n\n***\n\nSecond part.",
        "First part.\n***\n\n***\nSecond part.",
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        'First part.\n\n"Then, the second."',
        "First part.\n\nThereafter the second.",
    ),
    (
        "es:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "Desde mi punto de vista"},
        "Desde mi punto de vista, sí.\n\nFin.",
        "Desde mi casa se ve el mar.\n\nFin.",
    ),
    (
        "keywords:existence",
        {"keywords": ["sarah", "tianjin"]},
        "Sarah lives in Tianjin.",
        "Sarah lives in Beijing.",
    ),
    (
        "keywords:forbidden_words",
        {"forbidden_words": ["rock", "été"]},
        "Rocky roads in summer.",
        "Cet été était chaud.",
    ),
    (
        "keywords:frequency",
        {"keyword": "peace", "frequency": 2, "relation": "at least"},
        "Peace and more peace.",
        "Peace only.",
    ),
    (
        "keywords:letter_frequency",
        {"letter": "a", "let_frequency": 3, "let_relation": "less than"},
        "A cat.",
        "A banana.",
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{'a': 1}"),
    ("detectable_format:title", {}, "<<My Title>>\nBody.", "<< >> Body."),
    (
        "detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "* one\n- two\n---\n**bold line**",
        "* one\n* * *\n- two\n- three",
    ),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "*one* and **two**",
        "*one* and ** **",
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "SECTION 1\nA\nSECTION 2\nB",
        "SECTION 1\nA\nSection 2\nB",
    ),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes."),
    (
        "change_case:english_lowercase",
        {},
        PARAGRAPHS["en"].lower(),
        PARAGRAPHS["en"],
    ),
    (
        "change_case:english_capital",
        {},
        PARAGRAPHS["en"].upper(),
        PARAGRAPHS["fr"].upper(),
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        "This is VERY IMPORTANT.",
        "This is Very IMPORTANT.",
    ),
    (
        "startend:end_checker",
        {"end_phrase": "Is there anything else I can help with?"},
        '"Done. is there anything else I can help with?"  ',
        "Done. Is there anything else I can help with? Thanks.",
    ),
    (
        "startend:start_checker",
        {"start_phrase": "My answer"},
        "  my answer is short.",
        "Well, my answer is short.",
    ),
    ("startend:quotation", {}, '"Quoted answer."', 'Unquoted "answer".'),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Body.\n\n**P.S.** One more thing.",
        "I wrote p.s. in the middle of a line.",
    ),
    (
        "fr:detectable_content:postscript",
        {"postscript_marker": "PS"},
        "Corps du texte.\nPS : merci.",
        "Le temps passe vite.",
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "Send it to [name] at [address].",
        "Send it to [name].",
    ),
    ("detectable_content:no_digits", {}, "Deux mille vingt.", "En ２０２０."),
    (
        "language:response_language",
        {"language": "fr"},
        PARAGRAPHS["fr"],
        PARAGRAPHS["en"],
    ),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem."},
        "write a poem. Roses are red.",
        "Sure! Write a poem.",
    ),
    ("combination:two_responses", {}, "Answer A.\n******\nAnswer B.", "Same.\n******\nSame."),
    # Japanese
    ("ja:punctuation:no_comma", {}, "今日は晴れです。", "今日は、晴れです。"),
    ("ja:punctuation:no_period", {}, "今日は晴れです", "今日は晴れです。"),
    ("ja:detectable_format:title", {}, "『喜びの詩』\n本文", "<<喜びの詩>>\n本文"),
    (
        "ja:detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "《ピラミッド》と《ファラオ》",
        "《ピラミッド》と*ファラオ*",
    ),
    (
        "ja:detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "・一つめ\n・二つめ",
        "・一つめ\n・・\n* 二つめ",
    ),
    (
        "ja:detectable_format:number_numbered_lists",
        {"num_items": 2},
        "1. 一つめ\n２． 二つめ",
        "1. 一つめ\n二つめ",
    ),
    (
        "ja:detectable_format:multiple_sections",
        {"section_spliter": "章", "num_sections": 2},
        "第1章\nA\n第二章\nB",
        "第1章\nA\n第1節\nB",
    ),
    ("ja:detectable_format:constrained_response", {}, "はい、そうです。", "はい。"),
    ("ja:startend:quotation", {}, "「こんにちは。」", "「こんにちは。」と言った。"),
    (
        "ja:startend:end_checker",
        {"end_phrase": "他に質問はありますか。"},
        "「本文。他に質問はありますか。」",
        "他に質問はありますか。以上。",
    ),
    (
        "ja:startend:sentence_unified_end",
        {"ending": "です"},
        "これはペンです。あれは「本だ」です。\n",
        "これはペンです。あれは本だ。",
    ),
    (
        "ja:keywords:forbidden_words",
        {"forbidden_words": ["栄養"]},
        "健康が大切です。",
        "栄養素が大切です。",
    ),
    (
        "ja:keywords:letter_frequency",
        {"letter": "か", "let_frequency": 3, "let_relation": "以上"},
        "かカか",
        "かカ",
    ),
    (
        "ja:length_constraints:number_sentences",
        {"relation": "未満", "num_sentences": 3},
        "一文目です。二文目です。",
        "一文目です。\n二文目です\n三文目！",
    ),
    (
        "ja:length_constraints:number_letters",
        {"relation": "以上", "num_letters": 5},
        "あいうえお",
        "あい う\nえ",
    ),
    (
        "ja:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "首"},
        "一段落目。\n\n「首の長さ」について。",
        "一段落目。\n\n長い首。",
    ),
    ("ja:letters:furigana", {}, "漢字（かんじ）を書（か）く。", "漢字（かんじ）を書く。"),
    ("ja:letters:kanji", {"relation": "未満", "kanji_limit": 3}, "山と川", "山と川と海"),
    ("ja:letters:hiragana_only", {}, "ひらがなだけ、です。", "ひらがなとカタカナ"),
    ("ja:letters:katakana_only", {}, "カタカナ・ダケ。", "カタカナと"),
    ("ja:letters:no_hiragana", {}, "日本国憲法第九条", "日本国の憲法"),
    ("ja:letters:no_katakana", {}, "ひらがなと漢字", "はんかくｶﾀｶﾅ"),
    ("ja:letters:kansuuji", {}, "二〇二三年", "2023年"),
    # French
    ("fr:detectable_format:title", {}, "##Mon titre##\nTexte.", "<<Mon titre>>\nTexte."),
    ("fr:detectable_format:constrained_response", {}, "oui.", "Bien sûr."),
    ("fr:startend:quotation", {}, "« Bonjour »", "« Bonjour » dit-il."),
    (
        "fr:detectable_content:informal_address",
        {},
        "Je t'écris car je pense à toi.",
        "Je vous remercie de votre lettre.",
    ),
    (
        "fr:special_character:accents",
        {"word_to_accentuate": {"lecon": "leçon", "evenements": "événements", "tot": None}},
        "La leçon des Événements.",
        "La lecon des événements.",
    ),
    ("fr:special_character:no_accents", {}, "Les lecons de l'histoire", "Les leçons"),
    (
        "fr:special_character:ethel_or_cedilla",
        {"forbidden_char": "ç"},
        "Une facade.",
        "Une FAÇADE.",
    ),
    # Spanish
    ("es:detectable_format:constrained_response", {}, "Sí.", "Claro."),
    ("es:punctuation:question_marks", {}, "¿Qué es esto?", "Qué es esto?"),
    ("es:punctuation:exclamation_marks", {}, "¡Qué bien!", "Qué bien!"),
    ("es:special_character:enie", {"let_frequency": 2}, "El niño y la niña.", "El niño y la nina."),
    ("es:special_character:dieresis", {"let_frequency": 1}, "Un pingüino.", "Un pinguino."),
    (
        "es:special_character:tildes",
        {"relation": "como máximo", "num_words": 2},
        "Está allí.",
        "Está allí también.",
    ),
]


def _case_id(case: tuple[str, dict[str, Any] | None, str, str]) -> str:
    return case[0]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_checker_accepts_following_and_rejects_violating_response(
    case: tuple[str, dict[str, Any] | None, str, str],
) -> None:
    instruction_id, kwargs, follows, violates = case
    assert check_instruction(instruction_id, follows, kwargs) is True
    assert check_instruction(instruction_id, violates, kwargs) is False


def test_every_supported_checker_has_a_case() -> None:
    covered = {canonical_id(case[0]) for case in CASES}
    assert set(SUPPORTED) <= covered, sorted(set(SUPPORTED) - covered)


def test_tables_are_consistent() -> None:
    assert not set(SUPPORTED) & set(UNSUPPORTED)
    assert all(reason.strip() for reason in UNSUPPORTED.values())
    assert all(alias.target in SUPPORTED for alias in ALIASES.values())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("punctuation:no_comma", "punctuation:no_comma"),
        ("en:punctuation:no_comma", "punctuation:no_comma"),
        ("fr:punctuation:no_comma", "punctuation:no_comma"),
        ("FR:keywords:existence", "keywords:existence"),
        ("de:detectable_format:title", "detectable_format:title"),
        ("ja:punctuation:no_comma", "ja:punctuation:no_comma"),
        ("ja:detectable_format:title", "ja:detectable_format:title"),
        ("ja:keywords:existence", "keywords:existence"),
        ("ja:letters:furigana", "ja:letters:furigana"),
        ("ja:detectable_format:nominal_ending", "ja:detectable_format:nominal_ending"),
        ("fr:change_case:french_lowercase", "change_case:english_lowercase"),
        ("es:change_case:spanish_capital", "change_case:english_capital"),
        ("change_case:french_capital", "change_case:english_capital"),
        ("xx:made:up", "made:up"),
    ],
)
def test_canonical_id(raw: str, expected: str) -> None:
    assert canonical_id(raw) == expected


def test_case_aliases_check_their_own_language() -> None:
    french = PARAGRAPHS["fr"]
    assert check_instruction("fr:change_case:french_lowercase", french.lower(), {})
    assert not check_instruction("fr:change_case:french_lowercase", PARAGRAPHS["en"].lower(), {})
    assert not check_instruction("fr:change_case:french_lowercase", french, {})
    assert check_instruction("fr:change_case:french_capital", french.upper(), {})
    assert check_instruction("es:change_case:spanish_lowercase", PARAGRAPHS["es"].lower(), {})
    # The generic id keeps English, so French text fails it.
    assert not check_instruction("change_case:english_lowercase", french.lower(), {})


def test_none_valued_kwargs_are_dropped() -> None:
    arrow_style = {"num_placeholders": 2, "relation": None, "keywords": None, "language": None}
    assert check_instruction("detectable_content:number_placeholders", "[a] [b]", arrow_style)
    # None must not override the language an alias implies.
    assert check_instruction("fr:change_case:french_lowercase", PARAGRAPHS["fr"].lower(), {"language": None})
    assert check_instruction("punctuation:no_comma", "fine", None)


@pytest.mark.parametrize(
    ("kwargs", "kwarg"),
    [
        ({"relation": "at least"}, "num_words"),
        ({"relation": "at least", "num_words": None}, "num_words"),
        ({"relation": "at least", "num_words": "ten"}, "num_words"),
        ({"relation": "at least", "num_words": True}, "num_words"),
        ({"relation": "about", "num_words": 3}, "relation"),
        ({"num_words": 3}, "relation"),
    ],
)
def test_bad_kwarg_raises_naming_instruction_and_kwarg(kwargs: dict[str, Any], kwarg: str) -> None:
    with pytest.raises(InstructionArgumentError) as info:
        check_instruction("en:length_constraints:number_words", "one two three", kwargs)
    assert info.value.kwarg == kwarg
    assert info.value.instruction_id == "en:length_constraints:number_words"
    assert repr(kwarg) in str(info.value)
    assert "en:length_constraints:number_words" in str(info.value)


def test_integral_float_kwarg_is_accepted() -> None:
    kwargs = {"relation": "at least", "num_words": 3.0}
    assert check_instruction("length_constraints:number_words", "one two three", kwargs)


def test_list_kwarg_of_wrong_type_raises() -> None:
    with pytest.raises(InstructionArgumentError, match="keywords"):
        check_instruction("keywords:existence", "text", {"keywords": "single string"})


@pytest.mark.parametrize("instruction_id", ["ja:detectable_format:nominal_ending", "made:up"])
def test_unsupported_id_raises(instruction_id: str) -> None:
    with pytest.raises(UnsupportedInstructionError) as info:
        check_instruction(instruction_id, "text", {})
    assert instruction_id in str(info.value)
    assert isinstance(info.value, InstructionError)
    assert isinstance(info.value, ValueError)


def test_unsupported_error_gives_the_reason() -> None:
    with pytest.raises(UnsupportedInstructionError, match="part-of-speech"):
        check_instruction("ja:detectable_format:nominal_ending", "text", {"count": 2})


def test_verify_response_returns_one_bool_per_instruction() -> None:
    result = verify_response(
        "hello world",
        ["en:punctuation:no_comma", "en:keywords:existence", "startend:quotation"],
        [{}, {"keywords": ["world"], "frequency": None}, None],
    )
    assert result == [True, True, False]


def test_verify_response_length_mismatch_raises() -> None:
    with pytest.raises(InstructionError, match="2 instruction ids but 1 kwargs"):
        verify_response("text", ["punctuation:no_comma", "startend:quotation"], [{}])


@pytest.mark.parametrize("language", sorted(PARAGRAPHS))
def test_response_language_identifies_each_paragraph(language: str) -> None:
    paragraph = PARAGRAPHS[language]
    assert check_instruction("language:response_language", paragraph, {"language": language})
    for other in PARAGRAPHS:
        if other != language:
            assert not check_instruction("language:response_language", paragraph, {"language": other}), other


def test_sentence_splitting_rule() -> None:
    text = (
        "Dr. Smith met J. K. Rowling in the U.S. yesterday. It cost 3.50 dollars! Really?\n"
        "1. Buy milk.\n2. Buy bread. ¿Qué tal? Très bien ! 今日は晴れ。明日は雨"
    )
    assert sentences(text) == [
        "Dr. Smith met J. K. Rowling in the U.S. yesterday.",
        "It cost 3.50 dollars!",
        "Really?",
        "1. Buy milk.",
        "2. Buy bread.",
        "¿Qué tal?",
        "Très bien !",
        "今日は晴れ。",
        "明日は雨",
    ]
    assert sentences("Wait... what?! ...") == ["Wait...", "what?!"]


def test_words_handle_accents_and_decomposed_text() -> None:
    assert words("Où est l'été? Niño") == ["Où", "est", "l", "été", "Niño"]
    assert words("e\u0301te\u0301") == ["été"]


def test_paragraph_splitting() -> None:
    assert paragraphs_by_divider("***\nA\n***\nB\n***") == ["A", "B"]
    assert paragraphs_by_divider("A\n***\n***\nB") is None
    assert paragraphs_by_blank_line("A\n \nB\n\n\n\nC") == ["A", "B", "C"]


def _data_rows() -> list[dict[str, Any]]:
    if not DATA_DIR.is_dir():
        resources.unavailable("shared", f"IFEval data folder {DATA_DIR} is absent")
    rows = []
    for path in sorted(DATA_DIR.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    if not rows:
        resources.unavailable("shared", f"no *.jsonl rows in {DATA_DIR}")
    return rows


def test_every_data_instruction_id_is_supported_or_listed_unsupported() -> None:
    ids = {i for row in _data_rows() for i in row["instruction_id_list"]}
    unknown = sorted(i for i in ids if canonical_id(i) not in set(SUPPORTED) | set(UNSUPPORTED))
    assert not unknown


def _arrow_style(kwargs_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mimic an Arrow struct column: every row has every key, None where it had none."""
    keys = {key for kwargs in kwargs_list for key in kwargs}
    nested = {
        key: {k for kwargs in kwargs_list if isinstance(kwargs.get(key), dict) for k in kwargs[key]}
        for key in keys
    }
    filled = []
    for kwargs in kwargs_list:
        row: dict[str, Any] = dict.fromkeys(keys)
        for key, value in kwargs.items():
            row[key] = {**dict.fromkeys(nested[key]), **value} if isinstance(value, dict) else value
        filled.append(row)
    return filled


@pytest.mark.parametrize("layout", ["json", "arrow"])
def test_checkers_run_on_every_data_row(layout: str) -> None:
    rows = _data_rows()
    pairs = [
        (instruction_id, kwargs or {}, row["prompt"])
        for row in rows
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True)
        if canonical_id(instruction_id) in SUPPORTED
    ]
    all_kwargs = [kwargs for _, kwargs, _ in pairs]
    if layout == "arrow":
        all_kwargs = _arrow_style(all_kwargs)
    for (instruction_id, _, prompt), kwargs in zip(pairs, all_kwargs, strict=True):
        assert isinstance(check_instruction(instruction_id, prompt, kwargs), bool), instruction_id


def test_docs_list_every_supported_and_unsupported_id() -> None:
    from pathlib import Path

    from judges.ifeval import SUPPORTED, UNSUPPORTED

    docs = (Path(__file__).resolve().parents[2] / "docs" / "verifiers.md").read_text()
    missing = [i for i in [*SUPPORTED, *UNSUPPORTED] if f"`{i}`" not in docs]
    assert not missing, f"docs/verifiers.md does not list {missing}"
