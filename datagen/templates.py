"""Prompt templates: jinja2 files rendered with StrictUndefined.

A variable the template uses but the row lacks is an error naming the template and the variable.
"""

from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from assay.errors import AssayError


class TemplateRenderError(ValueError):
    """A row could not be rendered (a per-row error: the row goes to the dead-letter dataset)."""


def _compile(source: str, path: Path) -> tuple[jinja2.Template, frozenset[str]]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    try:
        variables = frozenset(jinja2.meta.find_undeclared_variables(env.parse(source)))
        return env.from_string(source), variables
    except jinja2.TemplateSyntaxError as err:
        raise AssayError(f"template {path}: line {err.lineno}: {err.message}") from err


class PromptTemplate:
    """A jinja2 template loaded from a file, with the variables it needs.

    Pickles as its source text (compiled jinja2 templates do not pickle), so it can travel to
    Ray workers.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise AssayError(f"template file not found: {path}")
        self.path = path
        self.source = path.read_text()
        self._template, self.variables = _compile(self.source, path)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.source = state["path"], state["source"]
        self._template, self.variables = _compile(self.source, self.path)

    def render(self, row: dict[str, Any]) -> str:
        """Render with the row's values; a missing or null variable raises TemplateRenderError."""
        context = {key: value for key, value in row.items() if value is not None}
        try:
            return self._template.render(context).strip()
        except jinja2.UndefinedError as err:
            raise TemplateRenderError(f"template {self.path.name}: {err.message}") from err
