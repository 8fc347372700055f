"""`brewops schema NAME`: print the JSON Schema of an output scripts read."""

from __future__ import annotations

import click

from brewops.json_schemas import NAMES, SCHEMAS, schema_text


def _listing() -> str:
    width = max(map(len, NAMES))
    return "\n".join(f"  {name:<{width}}  {what}" for name, what in SCHEMAS.items())


@click.command(
    "schema",
    help="Print the JSON Schema (draft 2020-12) of an output scripts read. Each names every "
    "key, and which may be null.\n\nNAME is one of:\n\n\b\n" + _listing(),
)
@click.argument("name", type=click.Choice(NAMES), metavar="NAME")
def schema(name: str) -> None:
    click.echo(schema_text(name), nl=False)
