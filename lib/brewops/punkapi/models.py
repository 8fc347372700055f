"""The beer schema (v2 shape), as the real catalogue has it: every field, the nulls it holds.

Strict types: a number sent as a string is a schema error, not something to coerce.
Unknown extra fields are allowed, so a newer server does not break the client.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brewops.punkapi.errors import SchemaError, shorten

Number = float | None


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Quantity(_Model):
    value: Number
    unit: str


class MashStep(_Model):
    temp: Quantity
    duration: Number


class Fermentation(_Model):
    temp: Quantity


class Method(_Model):
    mash_temp: list[MashStep]
    fermentation: Fermentation
    twist: str | None


class Malt(_Model):
    name: str
    amount: Quantity


class Hop(_Model):
    name: str
    amount: Quantity
    add: str
    attribute: str


class Ingredients(_Model):
    malt: list[Malt]
    hops: list[Hop]
    yeast: str | None


class Beer(_Model):
    id: Annotated[int, Field(ge=1)]
    name: str
    tagline: str
    first_brewed: str
    description: str
    image_url: str | None
    abv: Number
    ibu: Number
    target_fg: Number
    target_og: Number
    ebc: Number
    srm: Number
    ph: Number
    attenuation_level: Number
    volume: Quantity
    boil_volume: Quantity
    method: Method
    ingredients: Ingredients
    food_pairing: list[str]
    brewers_tips: str
    contributed_by: str


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_beer(beer: Any) -> dict[str, Any]:
    """Return `beer` unchanged if it matches the v2 schema, else raise SchemaError."""
    beer_id = beer.get("id") if isinstance(beer, dict) else None
    try:
        Beer.model_validate(beer)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = _field_path(first["loc"]) or "<beer>"
        raise SchemaError(
            f"Beer {shorten(repr(beer_id))}: field {field!r} {first['msg'][0].lower()}{first['msg'][1:]} "
            f"(got {shorten(repr(first['input']))})"
            + (f"; {exc.error_count() - 1} more problem(s)" if exc.error_count() > 1 else ""),
            beer_id=beer_id,
            field=field,
        ) from None
    return beer
