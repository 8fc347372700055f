"""The JSON Schemas (draft 2020-12) of what the command line writes for scripts to read,
one file NAME.schema.json each in this folder; `brewops schema NAME` prints one.

Not to be confused with `brewops.schema`, the columns of the Glue tables."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

# name -> what it describes (the help of `brewops schema` lists them)
SCHEMAS = {
    "prediction": "a line of `brewops model predict`",
    "evaluation": "the last line of `brewops model evaluate`",
    "metrics": "the metrics.json `brewops model train` writes",
    "model_card": "the model_card.json `brewops model train` writes",
    "training": "the last line of `brewops model train`",
    "model_version": "a line of `brewops model versions --json`",
    "run_summary": "build/run-summary.json, written by `brewops run` (`make run`)",
    "validation_report": "the output of `brewops validate run --json`",
    "reconciliation": "the output of `brewops stream reconcile --json`",
    "redrive": "the output of `brewops stream redrive --json`",
    "local_status": "the output of `brewops local status --json`",
}
NAMES = tuple(SCHEMAS)


def schema_text(name: str) -> str:
    """The JSON Schema of the output `name` (one of NAMES), as its file holds it."""
    if name not in SCHEMAS:
        raise ValueError(f"no schema {name!r}: the schemas are {', '.join(NAMES)}")
    return files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the output `name` (one of NAMES), parsed."""
    return json.loads(schema_text(name))
