"""Hop varieties, addition stages and the Tinseth estimate of bitterness.

The recipes give hop amounts and the stage of each addition but not the alpha acids of the
lot used, so the estimate uses a typical alpha-acid percentage per variety: the middle of
the range published by growers and hop merchants (Yakima Chief, Hopsteiner, BarthHaas,
NZ Hops). Real lots vary by ±1-2 points, which is noise the model has to live with.

Tinseth's utilisation (G. Tinseth, "Glenn's Hop Utilization Numbers", 1997):

    utilisation = 1.65 * 0.000125 ** (gravity - 1) * (1 - exp(-0.04 * minutes)) / 4.15
    IBU = utilisation * alpha_fraction * grams * 1000 / litres
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

# Typical alpha acids (%), middle of the published range. Keys are normalised names
# (see `normalise_hop_name`). Covers every variety in the DIY Dog catalogues plus the
# common varieties of newer recipes.
ALPHA_ACIDS: dict[str, float] = {
    "admiral": 14.5,
    "ahtanum": 5.0,
    "amarillo": 9.0,
    "apollo": 17.0,
    "ariana": 11.0,
    "azacca": 14.0,
    "bobek": 5.0,
    "bramling cross": 6.5,
    "bravo": 15.5,
    "bru 1": 14.5,
    "callista": 3.5,
    "calypso": 13.0,
    "cascade": 6.0,
    "cashmere": 8.0,
    "celeia": 4.5,
    "centennial": 10.0,
    "challenger": 7.5,
    "chinook": 13.0,
    "citra": 12.0,
    "columbus": 15.0,
    "comet": 9.5,
    "crystal": 4.5,
    "dana": 12.0,
    "denali": 14.0,
    "east kent golding": 5.5,
    "ekuanot": 14.5,
    "el dorado": 15.0,
    "ella": 14.5,
    "enigma": 15.0,
    "equinox": 14.5,
    "eureka": 18.0,
    "first gold": 7.5,
    "fuggle": 4.5,
    "galaxy": 14.0,
    "galena": 12.5,
    "golding": 5.0,
    "green bullet": 12.5,
    "hallertau blanc": 10.0,
    "hallertau mittelfruh": 4.0,
    "hallertau tradition": 6.0,
    "hercules": 16.0,
    "hersbrucker": 3.0,
    "huell melon": 7.0,
    "idaho 7": 13.5,
    "jarrylo": 15.5,
    "jester": 8.0,
    "kohatu": 6.5,
    "liberty": 4.5,
    "loral": 11.5,
    "lotus": 17.0,
    "magnum": 13.5,
    "mandarina bavaria": 8.5,
    "melba": 8.0,
    "mosaic": 12.5,
    "motueka": 7.0,
    "mount hood": 5.5,
    "nectaron": 11.0,
    "nelson sauvin": 12.5,
    "northdown": 8.0,
    "northern brewer": 8.5,
    "nugget": 13.0,
    "pacific gem": 14.0,
    "pacific jade": 13.0,
    "pacifica": 5.5,
    "palisade": 7.5,
    "perle": 8.0,
    "phoenix": 10.0,
    "pilgrim": 11.0,
    "pioneer": 9.5,
    "polaris": 20.0,
    "progress": 6.0,
    "rakau": 10.0,
    "riwaka": 5.5,
    "saaz": 3.5,
    "sabro": 14.0,
    "saphir": 3.5,
    "simcoe": 13.0,
    "sorachi ace": 12.0,
    "southern cross": 13.0,
    "spalt": 4.0,
    "sterling": 7.0,
    "strata": 12.0,
    "strisselspalt": 2.0,
    "styrian golding": 4.5,
    "summit": 17.0,
    "sultana": 14.0,
    "talus": 9.0,
    "target": 11.0,
    "tettnang": 4.5,
    "topaz": 17.0,
    "vic secret": 16.0,
    "waimea": 16.0,
    "wai iti": 3.0,
    "wakatu": 7.5,
    "warrior": 16.0,
    "willamette": 5.0,
    "zappa": 6.5,
    "zeus": 15.0,
}

# Hop (CO2) extract as sold for bittering: 40-60 % alpha acids.
EXTRACT_ALPHA = 50.0
# Pellets concentrated from the lupulin glands (Cryo, LupuLN2, Incognito): about twice the
# alpha acids of the whole cone.
LUPULIN_FACTOR = 2.0
# A hop the table does not know: about the usage-weighted mean alpha of the catalogue's hops.
DEFAULT_ALPHA = 10.0

# Spellings, trade names and pairs that mean one variety of the table.
ALIASES: dict[str, str] = {
    "bramling cross first gold": "bramling cross",
    "ctz": "columbus",
    "tomahawk": "columbus",
    "exp 366": "equinox",
    "hbc 366": "equinox",
    "hbc 369": "mosaic",
    "hbc 394": "talus",
    "hbc 472": "sabro",
    "hbc 638": "idaho 7",
    "ekg": "east kent golding",
    "east kent": "east kent golding",
    "east kent goldings": "east kent golding",
    "fuggles": "fuggle",
    "goldings": "golding",
    "hallertau": "hallertau mittelfruh",
    "hallertauer": "hallertau mittelfruh",
    "hallertauer blanc": "hallertau blanc",
    "hallertauer mittelfruh": "hallertau mittelfruh",
    "hallertau mittelfrueh": "hallertau mittelfruh",
    "mittelfruh": "hallertau mittelfruh",
    "pacific hallertau": "pacifica",
    "mt hood": "mount hood",
    "mt. hood": "mount hood",
    "nelson": "nelson sauvin",
    "saphire": "saphir",
    "sapphire": "saphir",
    "spalter": "spalt",
    "spalter select": "spalt",
    "stella": "ella",
    "styrian goldings": "styrian golding",
    "savinjski golding": "styrian golding",
    "tettnanger": "tettnang",
    "herkules": "hercules",
    "huell": "huell melon",
    "mandarina": "mandarina bavaria",
    "idaho seven": "idaho 7",
    "wai-iti": "wai iti",
    "hopshot": "co2 extract",  # a brand of CO2 hop extract in syringes
}

# Words that mark a variety's origin or form rather than the variety itself.
_QUALIFIERS = (
    "nz", "us", "uk", "usa", "german", "american", "english", "czech", "slovenian",
    "australian", "new zealand", "japanese", "french", "hop", "hops", "pellet", "pellets",
    "leaf", "whole", "cone", "cones", "t90", "t45", "flower", "flowers",
)  # fmt: skip

# Things brewed in the hop schedule that carry no alpha acids (fruit, spices, coffee, wood,
# sugars, salts). Matched as whole words or word starts in the normalised name.
_ADJUNCT_WORDS = (
    "juice", "concentrate", "puree", "peel", "zest", "coffee", "cocoa", "cacao", "cacoa",
    "nibs", "honey", "sugar", "sugars", "syrup", "muscavado", "muscovado", "demerara",
    "lactose", "milk", "oak", "chips", "wood", "whisky", "bourbon", "rum", "cinnamon",
    "coriander", "ginger", "nutmeg", "pepper", "peppercorn", "peppercorns", "anis",
    "anise", "cardamon", "cardamom", "juniper", "rosemary", "bay", "jasmine", "elderflower",
    "vanilla", "chili", "chilli", "chilies", "habanero", "habenero", "berries", "berry",
    "blueberries", "raspberry", "strawberries", "cherry", "cloudberries", "lingonberry",
    "blackberry", "blackcurrant", "mango", "peach", "apricot", "plum", "pineapple",
    "orange", "lemon", "lime", "grapefruit", "tangerine", "mandarin", "coconut", "salt",
    "sodium", "chloride", "marshmallows", "poppy", "guarana", "kola", "cascara", "husks",
    "seed", "seeds", "tea", "leaves", "spice", "spices", "chocolate", "fruit", "yuzu",
    "passion", "water", "lactobacillus", "brett", "yeast",
)  # fmt: skip
# Aroma products that name a variety but carry no alpha acids ("Galaxy Hop Oil") or none
# at all (Phantasm, a thiol powder from grape skins).
_AROMA_ONLY_RE = re.compile(r"\b(oil|oils|phantasm|thiol|thiols)\b")

_EXTRACT_RE = re.compile(r"\bextract\b")
_LUPULIN_RE = re.compile(r"\b(cryo|lupuln2|lupulin|incognito|spectrum)\b")


@dataclass(frozen=True)
class HopInfo:
    """What the estimate assumes about one named ingredient of the hop schedule."""

    name: str  # normalised
    kind: str  # "hop", "extract", "adjunct" or "unknown" (a hop the table lacks)
    alpha: float  # %


def normalise_hop_name(name: object) -> str:
    """Lower case, ASCII, single spaces; origin and form words dropped; aliases resolved."""
    if not isinstance(name, str):
        return ""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
    text = re.sub(r"\bc02\b", "co2", text)  # a zero for the letter O, as some recipes type it
    if text in ALIASES:
        return ALIASES[text]
    words = text.split(" ")
    while len(words) > 1 and words[0] in _QUALIFIERS:
        words = words[1:]
    while len(words) > 1 and words[-1] in _QUALIFIERS:
        words = words[:-1]
    text = " ".join(words)
    return ALIASES.get(text, text)


def _variety(normalised: str) -> str | None:
    if normalised in ALPHA_ACIDS:
        return normalised
    # "citra cryo", "simcoe lupulin": the variety is the leading words.
    stripped = _LUPULIN_RE.sub(" ", normalised).split()
    candidate = " ".join(stripped)
    candidate = ALIASES.get(candidate, candidate)
    if candidate in ALPHA_ACIDS:
        return candidate
    # "bramling cross/ first gold": the first known variety named.
    for size in (3, 2, 1):
        for start in range(len(stripped) - size + 1):
            part = " ".join(stripped[start : start + size])
            part = ALIASES.get(part, part)
            if part in ALPHA_ACIDS:
                return part
    return None


def hop_info(name: object) -> HopInfo:
    """Classify an entry of the hop schedule and give its assumed alpha acids (%)."""
    normalised = normalise_hop_name(name)
    if _AROMA_ONLY_RE.search(normalised):
        return HopInfo(normalised, "adjunct", 0.0)
    if _EXTRACT_RE.search(normalised) and not _is_adjunct(normalised.replace("extract", "")):
        return HopInfo(normalised, "extract", EXTRACT_ALPHA)
    variety = _variety(normalised)
    if variety is not None:
        factor = LUPULIN_FACTOR if _LUPULIN_RE.search(normalised) else 1.0
        return HopInfo(normalised, "hop", ALPHA_ACIDS[variety] * factor)
    if _is_adjunct(normalised):
        return HopInfo(normalised, "adjunct", 0.0)
    return HopInfo(normalised, "unknown", DEFAULT_ALPHA)


def _is_adjunct(normalised: str) -> bool:
    return any(word in _ADJUNCT_WORDS for word in normalised.split())


# ---------------------------------------------------------------------------------------
# Addition stages

# Minutes in the boil assumed for the DIY Dog stage words. A DIY Dog boil is 60 minutes
# unless a recipe says otherwise; "end" and flame-out additions get a short effective
# time because the wort stays hot (near 100 °C) for a few minutes after the flame is off.
BOIL_MINUTES = 60.0
MIDDLE_MINUTES = 30.0
HOT_WORT_MINUTES = 5.0
# First-wort hops steep while the kettle fills: counted as a 70-minute addition, a few
# per cent more than a 60-minute one on Tinseth's curve.
FIRST_WORT_MINUTES = 70.0
# Mash hops lose most alpha acids with the spent grain; about a fifth of a boil addition.
MASH_MINUTES = 5.0
MAX_MINUTES = 180.0


@dataclass(frozen=True)
class Stage:
    """An addition stage: its group and the minutes of isomerisation assumed."""

    group: str  # boil, whirlpool, dry, mash or unknown
    minutes: float


_DRY_WORDS = (
    "dry", "fv", "ferment", "fermenter", "fermentation", "secondary", "maturation",
    "conditioning", "condition", "wood", "ageing", "aging", "keg", "cask", "bottle",
    "bottling", "packaging", "tank", "brite", "cold", "post",
)  # fmt: skip
_WHIRLPOOL_WORDS = ("whirlpool", "flame", "flameout", "knockout", "stand", "hopstand", "steep")


def parse_stage(add: object, attribute: object = None) -> Stage:
    """Map an `add` value ("start", "Dry Hop", "70", "Flame Out", …) to a stage.

    Numbers are minutes before the end of the boil. An unknown word falls back to the
    hop's `attribute` (bitter -> start of the boil, flavour -> middle, aroma -> end).
    """
    if (isinstance(add, int) and not isinstance(add, bool)) or (
        isinstance(add, float) and math.isfinite(add)
    ):
        # clamped first: an integer too large for a float is still a number of minutes
        return _boil_stage(float(min(max(add, -1), MAX_MINUTES)))
    text = re.sub(r"[^a-z0-9. ]+", " ", str(add).lower()) if add is not None else ""
    words = text.split()
    number = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|mins|minutes)?\s*", text)
    if number:
        return _boil_stage(float(number.group(1)))
    if ("first" in words and "wort" in words) or "fwh" in words:
        return Stage("boil", FIRST_WORT_MINUTES)
    if "mash" in words:
        return Stage("mash", MASH_MINUTES)
    if any(word in _DRY_WORDS for word in words) or "dryhop" in text:
        return Stage("dry", 0.0)
    if any(word in _WHIRLPOOL_WORDS for word in words) or "flameout" in text.replace(" ", ""):
        return Stage("whirlpool", HOT_WORT_MINUTES)
    # the minutes or the stage say when in the boil ("Boil 15 min", "End of boil"): the
    # word boil alone means its start
    minutes_in_text = re.search(r"(\d+(?:\.\d+)?)\s*(m|min|mins|minutes)\b", text)
    if minutes_in_text:
        return _boil_stage(float(minutes_in_text.group(1)))
    if "start" in words:
        return Stage("boil", BOIL_MINUTES)
    if "middle" in words or "mid" in words:
        return Stage("boil", MIDDLE_MINUTES)
    if "end" in words or "late" in words:
        return Stage("whirlpool", HOT_WORT_MINUTES)
    if "boil" in words or "kettle" in words or "bittering" in words:
        return Stage("boil", BOIL_MINUTES)
    return _stage_from_attribute(attribute)


def _boil_stage(minutes: float) -> Stage:
    if minutes <= 0:
        return Stage("whirlpool", HOT_WORT_MINUTES)
    return Stage("boil", min(minutes, MAX_MINUTES))


def _stage_from_attribute(attribute: object) -> Stage:
    text = str(attribute).lower() if attribute is not None else ""
    if "bitt" in text or "biter" in text:
        return Stage("boil", BOIL_MINUTES)
    if "flav" in text:
        return Stage("boil", MIDDLE_MINUTES)
    if "aroma" in text:
        return Stage("whirlpool", HOT_WORT_MINUTES)
    return Stage("unknown", 0.0)


# ---------------------------------------------------------------------------------------
# Tinseth


def tinseth_utilisation(minutes: float, gravity: float) -> float:
    """Fraction of alpha acids isomerised and kept after `minutes` of boiling a wort of
    specific `gravity` (e.g. 1.050)."""
    if minutes <= 0:
        return 0.0
    bigness = 1.65 * 0.000125 ** (gravity - 1.0)
    boil_time_factor = (1.0 - math.exp(-0.04 * minutes)) / 4.15
    return bigness * boil_time_factor


def tinseth_ibu(
    grams: float, alpha_percent: float, minutes: float, gravity: float, litres: float
) -> float:
    """IBU contributed by one addition: mg/L of isomerised alpha acids."""
    if grams <= 0 or alpha_percent <= 0 or litres <= 0:
        return 0.0
    mg_per_litre = alpha_percent / 100.0 * grams * 1000.0 / litres
    return tinseth_utilisation(minutes, gravity) * mg_per_litre
