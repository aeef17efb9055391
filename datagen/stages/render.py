"""Render prompt templates into chat conversations."""

from datagen.stages.base import Row, RowStage
from datagen.templates import PromptTemplate
from datasets_registry.kinds import MESSAGES_TYPE


class RenderStage(RowStage):
    """Render a user-turn template (and an optional system-turn template) per row.

    Reads the variables the templates use; writes a conversation column.
    """

    def __init__(self, name: str, user: PromptTemplate, system: PromptTemplate | None, output: str) -> None:
        super().__init__(name)
        self.user = user
        self.system = system
        variables = user.variables | (system.variables if system else frozenset())
        self.reads = tuple(sorted(variables))
        self.output = output
        self.writes = {output: MESSAGES_TYPE}

    def process_row(self, row: Row) -> Row:
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system.render(row)})
        messages.append({"role": "user", "content": self.user.render(row)})
        return {self.output: messages}
