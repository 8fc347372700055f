"""The IBU model: features from the whole beer record, the fixed evaluation protocol, a
registry on S3 and predictions. Submodules import scikit-learn; this one stays light."""

# The fixed protocol's seed (folds, baselines, importance), here so the command line can show
# it without importing scikit-learn.
PROTOCOL_SEED = 20240601
# numpy's random generators take seeds from 0 to this
MAX_SEED = 2**32 - 1

# The JSON Schemas (draft 2020-12) of what scripts read, in schemas/: a line of `brewops
# model predict`, the last line of `brewops model evaluate`, metrics.json, model_card.json
SCHEMA_NAMES = ("prediction", "evaluation", "metrics", "model_card")


def schema_text(name: str) -> str:
    """The JSON Schema of the output `name` (one of SCHEMA_NAMES), as its file holds it."""
    from importlib.resources import files

    if name not in SCHEMA_NAMES:
        raise ValueError(f"no schema {name!r}: the schemas are {', '.join(SCHEMA_NAMES)}")
    return files(__name__).joinpath("schemas", f"{name}.schema.json").read_text(encoding="utf-8")


def schema(name: str) -> dict:
    """The JSON Schema of the output `name` (one of SCHEMA_NAMES), parsed."""
    import json

    return json.loads(schema_text(name))
