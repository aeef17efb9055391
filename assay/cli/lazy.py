"""A typer group whose sub-groups are imported only when a command needs them.

Typer builds the whole command tree before it runs anything, so with every group imported up
front `assay jobs list` paid for the import of all eleven CLI modules (and a mistake in one of
them broke every command). The top-level `assay` group instead knows its groups by name and
module, and imports a module when its group is run, asked for help, or listed by `assay --help`.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
import typer
import typer.main
from typer.core import TyperGroup


def lazy_group(groups: dict[str, str]) -> type[TyperGroup]:
    """A `TyperGroup` class (for `typer.Typer(cls=...)`) with sub-groups imported on demand.

    Args:
        groups: Group name to the module whose module-level `app` (a `typer.Typer`) it is,
            in the order `--help` lists them (after the commands registered the usual way).
    """

    class LazyGroup(TyperGroup):
        def list_commands(self, ctx: click.Context) -> list[str]:
            return [*self.commands, *(name for name in groups if name not in self.commands)]

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            if cmd_name not in self.commands and cmd_name in groups:
                sub_app = importlib.import_module(groups[cmd_name]).app
                group = typer.main.get_group(sub_app)
                group.name = cmd_name
                self.commands[cmd_name] = group
            return self.commands.get(cmd_name)

        def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
            if args and args[0] not in self.commands and args[0] not in groups:
                for name in groups:  # an unknown name: "did you mean" looks at every group
                    self.get_command(ctx, name)
            return super().resolve_command(ctx, args)

    return LazyGroup
