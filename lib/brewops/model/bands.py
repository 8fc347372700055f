"""The bitterness bands the classifier predicts: (-1, 30], (30, 50], (50, 70], (70, inf).

EDGES is the one place they are set: the labels, the number of bands, the metrics, the
plots and the model card follow from it. A model records the labels it was trained with,
and a model trained with other bands is refused when loaded (`brewops.model.registry`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def labels_of(edges: Sequence[float]) -> tuple[str, ...]:
    """The label of each band between consecutive edges: "(30, 50]", the last "(70, inf)"."""
    return tuple(
        f"({lower:g}, {upper:g}]" if math.isfinite(upper) else f"({lower:g}, inf)"
        for lower, upper in itertools.pairwise(edges)
    )


EDGES: tuple[float, ...] = (-1.0, 30.0, 50.0, 70.0, float("inf"))
LABELS: tuple[str, ...] = labels_of(EDGES)
N_BANDS = len(LABELS)


def band_index(ibu: float | np.ndarray) -> np.ndarray:
    """Band number (0 to N_BANDS - 1) of each IBU value; right-closed intervals as the
    labels say."""
    values = np.atleast_1d(np.asarray(ibu, dtype=float))
    if np.isnan(values).any():
        raise ValueError("IBU values must not be NaN")
    # right=True: a value equal to an upper edge stays in the lower band (30 -> band 0).
    index = np.digitize(values, EDGES[1:-1], right=True)
    return index


def counts(ibu: np.ndarray) -> list[int]:
    """How many of the IBU values fall in each band, in band order; NaN (no IBU) in none."""
    values = np.asarray(ibu, dtype=float)
    return np.bincount(band_index(values[~np.isnan(values)]), minlength=N_BANDS).tolist()


def band_label(index: int) -> str:
    return LABELS[int(index)]
