"""Render prompt templates into chat conversations."""

from typing import Literal

from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage
from datagen.templates import PromptTemplate
from datasets_registry.kinds import MESSAGES_TYPE


class RenderStageSpec(StageSpec):
    """Render a jinja2 template per row into a chat conversation."""

    type: Literal["render"] = "render"
    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    output: str = Field("prompt_messages", description="Column for the conversation.")


@register_stage
class RenderStage(RowStage[RenderStageSpec]):
    """Render a user-turn template (and an optional system-turn template) per row.

    Reads the variables the templates use; writes a conversation column.
    """

    spec_class = RenderStageSpec

    def __init__(self, spec: RenderStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        self.user = PromptTemplate(context.resolve(spec.template))
        self.system = PromptTemplate(context.resolve(spec.system)) if spec.system else None
        variables = self.user.variables | (self.system.variables if self.system else frozenset())
        self.reads = tuple(sorted(variables))
        self.writes = {spec.output: MESSAGES_TYPE}

    def process_row(self, row: Row) -> Row:
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system.render(row)})
        messages.append({"role": "user", "content": self.user.render(row)})
        return {self.spec.output: messages}
