"""Prompt templates: strict rendering with errors that name the template and variable."""

from pathlib import Path

import pytest

from assay.errors import AssayError
from datagen.templates import PromptTemplate, TemplateRenderError


def template(tmp_path: Path, text: str) -> PromptTemplate:
    path = tmp_path / "t.j2"
    path.write_text(text)
    return PromptTemplate(path)


def test_renders_and_reports_variables(tmp_path: Path) -> None:
    t = template(tmp_path, "Answer in {{ language }}: {{ prompt }}\n")
    assert t.variables == {"language", "prompt"}
    assert t.render({"language": "fr", "prompt": "Bonjour", "extra": 1}) == "Answer in fr: Bonjour"


@pytest.mark.parametrize("row", [{"prompt": "x"}, {"prompt": "x", "language": None}])
def test_missing_or_null_variable_names_template_and_variable(tmp_path: Path, row: dict) -> None:
    t = template(tmp_path, "{{ language }} {{ prompt }}")
    with pytest.raises(TemplateRenderError, match=r"t\.j2.*'language' is undefined"):
        t.render(row)


def test_syntax_error_and_missing_file_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(AssayError, match=r"t\.j2: line 1"):
        template(tmp_path, "{{ prompt ")
    with pytest.raises(AssayError, match="template file not found"):
        PromptTemplate(tmp_path / "absent.j2")


def test_template_survives_pickling_for_ray_workers(tmp_path: Path) -> None:
    import pickle

    t = pickle.loads(pickle.dumps(template(tmp_path, "Hi {{ name }}")))
    assert t.render({"name": "Ada"}) == "Hi Ada"
    assert t.variables == {"name"}
