"""Larger catalogues for load tests: real beers resampled with new ids and jittered numbers.

Beers are generated one at a time and written as they come, so memory stays flat whatever
the size (1,000,000 beers is about 2 GB on disk, a few MB in memory). The same seed gives
the same file, byte for byte.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brewops.catalog import CatalogError, load_catalog, write_catalog

# field -> decimals kept after jitter
JITTERED_FIELDS = {
    "abv": 1,
    "ibu": 0,
    "target_fg": 0,
    "target_og": 0,
    "ebc": 0,
    "srm": 1,
    "ph": 1,
    "attenuation_level": 1,
}
DEFAULT_JITTER = 0.05  # relative standard deviation


@dataclass(frozen=True)
class SynthReport:
    path: Path
    beers: int
    seed: int
    source_beers: int


def _jitter(value: Any, rng: random.Random, scale: float, decimals: int) -> Any:
    if value is None:
        return None  # keep the real data's gaps: cleaners must still meet them
    noise = rng.gauss(0.0, scale)
    if not _finite_number(value) or not _finite_number(jittered := max(value * (1.0 + noise), 0.0)):
        return value  # text, NaN, infinities and numbers beyond a float are kept as they are
    return round(jittered) if decimals == 0 else round(jittered, decimals)


def _finite_number(value: Any) -> bool:
    """A number that can be jittered: not text, a boolean, NaN, an infinity or an integer
    too large for a float (a catalogue may hold any of them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def iter_synthetic_beers(
    source: Sequence[dict[str, Any]],
    n: int,
    *,
    seed: int = 0,
    jitter: float = DEFAULT_JITTER,
    first_id: int = 1,
) -> Iterator[dict[str, Any]]:
    """Yield `n` beers drawn from `source`, ids first_id..first_id+n-1, numbers jittered."""
    if not source:
        raise ValueError("cannot resample an empty catalogue")
    rng = random.Random(seed)
    for offset in range(n):
        base = source[rng.randrange(len(source))]
        beer = dict(base)  # shallow: nested parts are shared, never modified
        beer["id"] = first_id + offset
        name = base.get("name")
        if isinstance(name, str):
            beer["name"] = f"{name} #{beer['id']}"
        # else a missing, null or non-text name is kept as it is, like the numbers: the
        # loader asks only for ids, and the transform must still meet such a beer
        for field, decimals in JITTERED_FIELDS.items():
            beer[field] = _jitter(base.get(field), rng, jitter, decimals)
        yield beer


def synthesize(
    n: int,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    catalog: str | os.PathLike[str] | None = None,
    jitter: float = DEFAULT_JITTER,
) -> SynthReport:
    """Write a catalogue of `n` synthetic beers to `out` (a JSON array), streaming."""
    if n < 0:
        raise ValueError("n must be >= 0")
    source = load_catalog(catalog)
    if not source:  # said here, as an error the command line shows without a traceback
        raise CatalogError(
            f"The catalogue {catalog} has no beers to resample: point --catalog at one that has."
        )
    path = write_catalog(iter_synthetic_beers(source, n, seed=seed, jitter=jitter), out)
    return SynthReport(path=path, beers=n, seed=seed, source_beers=len(source))
