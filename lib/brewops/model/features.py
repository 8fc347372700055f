"""Features of a beer, from its full record (v2 or v3 shape).

The same functions build the training matrix and the row of a beer to predict, so the two
can never drift apart. Records may come from a catalogue file (dicts), from the raw table
(a DataFrame whose nested fields are dicts, JSON strings or arrays) or from the API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from brewops.jsontext import collector_paused, parse_json
from brewops.model import hops as hop_table

# The six numeric columns of the cleaned table that the public solutions of the challenge
# feed to a random forest: the baseline.
BASELINE_COLUMNS: tuple[str, ...] = ("abv", "target_fg", "target_og", "ebc", "srm", "ph")

# A DIY Dog recipe is written for 20 litres into the fermenter, from 25 litres boiled.
DEFAULT_VOLUME_LITRES = 20.0
DEFAULT_GRAVITY = 1.050

_FLOAT32_MAX = float(np.finfo(np.float32).max)

_NESTED_FIELDS = ("volume", "boil_volume", "method", "ingredients", "food_pairing")

_GRAM_FACTORS = {
    "g": 1.0, "gram": 1.0, "grams": 1.0, "gr": 1.0,
    "kg": 1000.0, "kilogram": 1000.0, "kilograms": 1000.0, "kilo": 1000.0, "kilos": 1000.0,
    "mg": 0.001, "milligram": 0.001, "milligrams": 0.001,
    "oz": 28.3495, "ounce": 28.3495, "ounces": 28.3495,
    "lb": 453.592, "lbs": 453.592, "pound": 453.592, "pounds": 453.592,
    # Liquids (hop extract, juices, cold brew): about the density of water.
    "ml": 1.0, "millilitre": 1.0, "millilitres": 1.0, "milliliter": 1.0, "milliliters": 1.0,
    "l": 1000.0, "litre": 1000.0, "litres": 1000.0, "liter": 1000.0, "liters": 1000.0,
}  # fmt: skip
_LITRE_FACTORS = {
    "l": 1.0, "litre": 1.0, "litres": 1.0, "liter": 1.0, "liters": 1.0,
    "ml": 0.001, "millilitre": 0.001, "millilitres": 0.001, "milliliter": 0.001,
    "hl": 100.0, "hectolitre": 100.0, "hectolitres": 100.0,
    "gallon": 3.78541, "gallons": 3.78541, "gal": 3.78541,
}  # fmt: skip
# unit -> (its zero in the unit's own degrees, the size of its degree in Celsius degrees)
_CELSIUS_CONVERSIONS = {
    "": (0.0, 1.0), "c": (0.0, 1.0), "celsius": (0.0, 1.0), "centigrade": (0.0, 1.0),
    "f": (32.0, 5.0 / 9.0), "fahrenheit": (32.0, 5.0 / 9.0),
    "k": (273.15, 1.0), "kelvin": (273.15, 1.0),
}  # fmt: skip
# "°F", "deg C", "degrees Celsius": the unit's name is what is left
_DEGREE_WORDS = re.compile(r"^(degrees|degree|deg)\b|[°º˚\s]")

# Malt names by what they do to a beer; matched as substrings of the lower-cased name.
_CRYSTAL_MALTS = ("crystal", "caramalt", "cara", "carared", "caramunich", "carahell", "special b")
_DARK_MALTS = ("chocolate", "roast", "black", "carafa", "brown", "coffee", "dark")
_WHEAT_MALTS = ("wheat", "weizen")
_SUGARS = ("sugar", "syrup", "honey", "dextrose", "lactose", "muscovado", "demerara", "candi")

# Beer styles by the words that announce them in a name or tagline ("Imperial Black IPA.").
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "ipa": ("ipa", "india pale", "iipa", "dipa"),
    "strong": ("imperial", "double", "triple", "barley wine", "barleywine", "quad"),
    "pale": ("pale ale", "apa", "session", "golden ale", "blonde"),
    "bitter": ("bitter", "esb", "west coast", "hop bomb", "hoppy", "hopped"),
    "hazy": ("new england", "vermont", "neipa", "hazy", "juicy", "milkshake"),
    "dark": ("stout", "porter", "black", "schwarz", "dark", "brown"),
    "lager": ("lager", "pils", "helles", "kellerbier", "bock", "dunkel", "marzen"),
    "wheat": ("wheat", "weiss", "weisse", "weizen", "wit", "witbier", "hefe"),
    "sour": ("sour", "berliner", "gose", "lambic", "wild", "kriek", "brett", "tart"),
    "belgian": ("belgian", "saison", "farmhouse", "dubbel", "tripel", "abbey", "trappist"),
    "red": ("red ale", "amber", "red rye", "scotch", "wee heavy"),
    "fruit": ("fruit", "raspberry", "cherry", "mango", "peach", "berry", "grapefruit"),
    "aged": ("aged", "barrel", "bourbon", "whisky", "whiskey", "oak", "cask"),
}

# Yeast families by words of the strain's name ("Wyeast 2007 - Pilsen Lager").
YEAST_WORDS: dict[str, tuple[str, ...]] = {
    "american": ("american", "1056", "1272", "us 05", "us05", "wlp001", "chico", "california"),
    "english": ("london", "english", "british", "london ale", "wlp013", "1968", "s 04", "s04"),
    "lager": ("lager", "pilsen", "bohemian", "saflager", "34 70", "w 34", "s 189", "s189"),
    "belgian": ("belgian", "saison", "trappist", "abbey", "monastery", "ardennes", "witbier"),
    "wheat": ("wheat", "weizen", "hefe"),
    "strong": ("high gravity", "champagne", "wine", "strong ale"),
    "hazy": ("vermont", "conan", "juicy", "new england"),
}

FEATURE_COLUMNS: tuple[str, ...] = (
    # the cleaned columns and the rest of the record's numbers
    "abv", "target_fg", "target_og", "ebc", "srm", "ph", "attenuation_level",
    "volume_litres", "boil_volume_litres", "mash_temp", "mash_minutes", "fermentation_temp",
    # the physics-informed estimate of bitterness
    "tinseth_ibu", "log_tinseth_ibu", "tinseth_boil_ibu", "tinseth_late_ibu", "bu_gu_estimate",
    # the hop schedule: grams per litre and alpha acids (mg/L) by stage
    "hops_g_per_l", "bittering_g_per_l", "middle_g_per_l", "late_g_per_l", "dry_g_per_l",
    "alpha_mg_per_l", "bittering_alpha_mg_per_l", "boil_alpha_mg_per_l",
    "mean_boil_alpha", "longest_boil_minutes", "hop_additions", "hop_varieties",
    "extract_g_per_l", "unknown_hop_share", "adjunct_additions",
    # the malt bill
    "malt_kg_per_l", "malts", "crystal_share", "dark_share", "wheat_share", "sugar_share",
    # the style the name and tagline announce
    *(f"style_{name}" for name in STYLE_WORDS),
    # the yeast family
    *(f"yeast_{name}" for name in YEAST_WORDS),
)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Records


def beer_records(data: Any) -> list[dict[str, Any]]:
    """Beer records as plain v2-shaped dicts from a DataFrame, a list of dicts or one dict.

    Nested fields stored as JSON strings or arrays (as tables return them) are decoded;
    NaN becomes None.
    """
    if isinstance(data, pd.DataFrame):
        rows: Iterable[Mapping[str, Any]] = data.to_dict(orient="records")
    elif isinstance(data, Mapping):
        rows = [data]
    else:
        rows = list(data)
    with collector_paused():  # plain copies of every record: a large tree of plain values
        return [
            _to_v2_shape({key: _plain(key, value) for key, value in row.items()}) for row in rows
        ]


def _plain(key: str, value: Any) -> Any:
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str) and key in _NESTED_FIELDS and value[:1] in ("{", "["):
        try:
            return _plain(key, parse_json(value))
        except ValueError:
            return None
    if isinstance(value, np.ndarray):
        return [_plain(key, item) for item in value.tolist()]
    if isinstance(value, Mapping):
        return {k: _plain(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(key, item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _to_v2_shape(beer: dict[str, Any]) -> dict[str, Any]:
    from brewops.catalog import to_v2_shape

    return to_v2_shape(beer)


def deduplicate(beers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per id (the last seen wins), sorted by id; records without an id kept."""
    by_id: dict[Any, dict[str, Any]] = {}
    without_id = []
    for beer in beers:
        if beer.get("id") is None:
            without_id.append(beer)
        else:
            by_id[beer["id"]] = beer
    return [by_id[key] for key in sorted(by_id, key=id_sort_key)] + without_id


def id_sort_key(value: Any) -> tuple[int, Any]:
    numeric = number(value)
    return (0, numeric) if numeric is not None else (1, str(value))


def beer_key(beer: Mapping[str, Any]) -> str:
    """A beer's identity across catalogues: its name, case-folded, runs of anything but
    letters and digits (accented ones too) made one space. Not the id: a catalogue may
    number beers its own way.
    """
    return re.sub(r"[\W_]+", " ", str(beer.get("name") or "").casefold()).strip()


def labelled(data: Any) -> list[dict[str, Any]]:
    """The deduplicated records that have an IBU: what training and evaluation use."""
    return [beer for beer in deduplicate(beer_records(data)) if number(beer.get("ibu")) is not None]


def ibu_values(beers: list[dict[str, Any]]) -> np.ndarray:
    """The IBU of each record (as `labelled` returns them), float; NaN where it has none."""
    return np.array([number(beer.get("ibu")) for beer in beers], dtype=float)


# ---------------------------------------------------------------------------------------
# Features


def build_features(data: Any) -> pd.DataFrame:
    """The feature matrix (FEATURE_COLUMNS, float) of records in any accepted form."""
    return features_of_records(beer_records(data))


def features_of_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """`build_features` of records `beer_records` already made plain (as `labelled` returns
    them), without making them plain again."""
    rows = [beer_features(beer) for beer in records]
    frame = pd.DataFrame(rows, columns=list(FEATURE_COLUMNS), dtype=float)
    # The forests compute in float32: one infinite or out-of-range value (an absurd amount
    # or volume) would make scikit-learn refuse every beer of the batch. As NaN it is
    # imputed like any missing value, and only that beer is affected.
    return frame.where(np.isfinite(frame) & (frame.abs() <= _FLOAT32_MAX))


def beer_features(beer: Mapping[str, Any]) -> dict[str, float]:
    """Every feature of one beer; missing values are NaN."""
    features: dict[str, float] = {}
    for name in ("abv", "target_fg", "ebc", "srm", "ph", "attenuation_level"):
        features[name] = _or_nan(number(beer.get(name)))
    features["target_fg"] = _gravity_points(features["target_fg"])
    og_points = _gravity_points(_or_nan(number(beer.get("target_og"))))
    features["target_og"] = og_points
    volume = _litres(beer.get("volume"))
    boil_volume = _litres(beer.get("boil_volume"))
    features["volume_litres"] = _or_nan(volume)
    features["boil_volume_litres"] = _or_nan(boil_volume)
    features.update(_method_features(beer.get("method")))

    litres = volume if volume and volume > 0 else DEFAULT_VOLUME_LITRES
    gravity = og_points / 1000.0 if not math.isnan(og_points) else DEFAULT_GRAVITY
    ingredients = _mapping(beer.get("ingredients"))
    features.update(hop_features(ingredients.get("hops"), gravity=gravity, litres=litres))
    gravity_units = og_points - 1000.0
    features["bu_gu_estimate"] = (
        features["tinseth_ibu"] / gravity_units if gravity_units > 1 else math.nan
    )
    features.update(_malt_features(ingredients.get("malt"), litres=litres))
    features.update(style_features(beer.get("name"), beer.get("tagline")))
    features.update(_flags("yeast", YEAST_WORDS, ingredients.get("yeast")))
    return features


def style_features(*texts: Any) -> dict[str, float]:
    """1.0 for each style the texts name, as whole words or phrases (case-insensitive)."""
    return _flags("style", STYLE_WORDS, *texts)


def _flags(prefix: str, vocabulary: Mapping[str, tuple[str, ...]], *texts: Any) -> dict[str, float]:
    words = " ".join(str(text) for text in texts if isinstance(text, str))
    normalised = " " + re.sub(r"[^a-z0-9]+", " ", words.lower()) + " "
    return {
        f"{prefix}_{name}": float(any(f" {phrase} " in normalised for phrase in phrases))
        for name, phrases in vocabulary.items()
    }


def hop_features(hops: Any, *, gravity: float, litres: float) -> dict[str, float]:
    """The hop schedule summarised: Tinseth IBU, grams and alpha acids by stage."""
    grams_by = dict.fromkeys(("bittering", "middle", "late", "dry", "all"), 0.0)
    alpha_by = dict.fromkeys(("bittering", "boil", "all"), 0.0)
    ibu_boil = ibu_late = extract_grams = unknown_grams = 0.0
    boil_alpha_weighted = boil_grams = 0.0
    longest = 0.0
    additions = adjuncts = 0
    unread = False  # a hop with an amount in a unit not known
    for addition in hops if isinstance(hops, list) else []:
        if not isinstance(addition, Mapping):
            continue
        info = hop_table.hop_info(addition.get("name"))
        if info.kind == "adjunct":
            adjuncts += 1
            continue
        grams = _grams(addition.get("amount"))
        if grams is None:
            unread = unread or _amount_in_unknown_unit(addition.get("amount"))
            continue
        if grams <= 0:
            continue
        stage = hop_table.parse_stage(addition.get("add"), addition.get("attribute"))
        additions += 1
        alpha_mg = info.alpha / 100.0 * grams * 1000.0
        grams_by["all"] += grams
        alpha_by["all"] += alpha_mg
        if info.kind == "extract":
            extract_grams += grams
        elif info.kind == "unknown":
            unknown_grams += grams
        ibu = hop_table.tinseth_ibu(grams, info.alpha, stage.minutes, gravity, litres)
        if stage.group == "boil":
            longest = max(longest, stage.minutes)
            alpha_by["boil"] += alpha_mg
            boil_alpha_weighted += info.alpha * grams
            boil_grams += grams
            if stage.minutes >= 45:
                grams_by["bittering"] += grams
                alpha_by["bittering"] += alpha_mg
                ibu_boil += ibu
            elif stage.minutes >= 15:
                grams_by["middle"] += grams
                ibu_boil += ibu
            else:
                grams_by["late"] += grams
                ibu_late += ibu
        elif stage.group in ("whirlpool", "mash"):
            grams_by["late"] += grams
            ibu_late += ibu
        elif stage.group == "dry":
            grams_by["dry"] += grams
    total_ibu = ibu_boil + ibu_late
    summary = {
        "tinseth_ibu": total_ibu,
        "log_tinseth_ibu": math.log1p(total_ibu),
        "tinseth_boil_ibu": ibu_boil,
        "tinseth_late_ibu": ibu_late,
        "hops_g_per_l": grams_by["all"] / litres,
        "bittering_g_per_l": grams_by["bittering"] / litres,
        "middle_g_per_l": grams_by["middle"] / litres,
        "late_g_per_l": grams_by["late"] / litres,
        "dry_g_per_l": grams_by["dry"] / litres,
        "alpha_mg_per_l": alpha_by["all"] / litres,
        "bittering_alpha_mg_per_l": alpha_by["bittering"] / litres,
        "boil_alpha_mg_per_l": alpha_by["boil"] / litres,
        "mean_boil_alpha": boil_alpha_weighted / boil_grams if boil_grams else math.nan,
        "longest_boil_minutes": longest,
        "hop_additions": float(additions),
        "hop_varieties": float(len(hop_variety_names(hops))),
        "extract_g_per_l": extract_grams / litres,
        "unknown_hop_share": unknown_grams / grams_by["all"] if grams_by["all"] else 0.0,
        "adjunct_additions": float(adjuncts),
    }
    if unread:
        # summed without that hop, the schedule would read as less bitter than it is:
        # missing, the model fills it in from the training beers and the estimate is null
        kept = ("hop_varieties", "adjunct_additions")
        summary = {name: value if name in kept else math.nan for name, value in summary.items()}
    return summary


def hop_variety_names(hops: Any) -> set[str]:
    """The hop varieties (normalised names) of a hop schedule, as the `hop_varieties`
    feature counts them: the additions with an amount, adjuncts left out, and those
    without a name, whose variety is not known."""
    names = set()
    for addition in hops if isinstance(hops, list) else []:
        if not isinstance(addition, Mapping):
            continue
        info = hop_table.hop_info(addition.get("name"))
        grams = _grams(addition.get("amount"))
        if info.name and info.kind != "adjunct" and grams is not None and grams > 0:
            names.add(info.name)
    return names


def _malt_features(malts: Any, *, litres: float) -> dict[str, float]:
    kilograms = dict.fromkeys(("all", "crystal", "dark", "wheat", "sugar"), 0.0)
    count = 0
    for malt in malts if isinstance(malts, list) else []:
        if not isinstance(malt, Mapping):
            continue
        grams = _grams(malt.get("amount"), bare_unit="kilograms")
        if grams is None or grams <= 0:
            continue
        count += 1
        kg = grams / 1000.0
        name = str(malt.get("name") or "").lower()
        kilograms["all"] += kg
        if any(word in name for word in _CRYSTAL_MALTS):
            kilograms["crystal"] += kg
        if any(word in name for word in _DARK_MALTS):
            kilograms["dark"] += kg
        if any(word in name for word in _WHEAT_MALTS):
            kilograms["wheat"] += kg
        if any(word in name for word in _SUGARS):
            kilograms["sugar"] += kg
    total = kilograms["all"]

    def share(part: str) -> float:
        return kilograms[part] / total if total else math.nan

    return {
        "malt_kg_per_l": total / litres if total else math.nan,
        "malts": float(count),
        "crystal_share": share("crystal"),
        "dark_share": share("dark"),
        "wheat_share": share("wheat"),
        "sugar_share": share("sugar"),
    }


def _method_features(method: Any) -> dict[str, float]:
    method = method if isinstance(method, Mapping) else {}
    steps = method.get("mash_temp") if isinstance(method.get("mash_temp"), list) else []
    first = steps[0] if steps and isinstance(steps[0], Mapping) else {}
    temp = _mapping(first.get("temp"))
    fermentation_temp = _mapping(_mapping(method.get("fermentation")).get("temp"))
    return {
        "mash_temp": _celsius(temp),
        "mash_minutes": _or_nan(number(first.get("duration"))),
        "fermentation_temp": _celsius(fermentation_temp),
    }


# ---------------------------------------------------------------------------------------
# Units


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text ("4,5" too); None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().replace(",", ".")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # an integer of 309 digits or more
        return None
    return number if math.isfinite(number) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _gravity_points(value: float) -> float:
    """Gravity as 1000 x specific gravity: 1.074 and 1074 both give 1074."""
    if math.isnan(value) or value <= 0:
        return math.nan
    if value < 2:
        return value * 1000.0
    return value


def _unit(quantity: Mapping[str, Any]) -> str:
    return str(quantity.get("unit") or "").strip().lower().rstrip(".")


def _grams(amount: Any, bare_unit: str = "grams") -> float | None:
    """An amount in grams; None when it is a count ("total", "each") or not a number."""
    if not isinstance(amount, Mapping):
        value = number(amount)
        return None if value is None else value * _GRAM_FACTORS[bare_unit]
    value = number(amount.get("value"))
    if value is None:
        return None
    unit = _unit(amount) or bare_unit
    factor = _GRAM_FACTORS.get(unit)
    return None if factor is None else value * factor


def _amount_in_unknown_unit(amount: Any) -> bool:
    """Whether `amount` is a number in a unit `_grams` does not know ("pellets", "oz."
    misspelt), not a missing one."""
    return isinstance(amount, Mapping) and number(amount.get("value")) is not None


def _litres(volume: Any) -> float | None:
    if not isinstance(volume, Mapping):
        return number(volume)
    value = number(volume.get("value"))
    if value is None:
        return None
    factor = _LITRE_FACTORS.get(_unit(volume) or "litres")
    return None if factor is None else value * factor


def _celsius(temp: Mapping[str, Any]) -> float:
    """A temperature in Celsius (the unit when none is given); NaN in a unit not known,
    which a reading taken for Celsius (292 for 292 K) would make wrong, not missing."""
    value = number(temp.get("value"))
    conversion = _CELSIUS_CONVERSIONS.get(_DEGREE_WORDS.sub("", _unit(temp)))
    if value is None or conversion is None:
        return math.nan
    zero, degree = conversion
    return (value - zero) * degree
