"""The fixed bitterness bands the classifier predicts: (-1, 30], (30, 50], (50, 70], (70, inf)."""

from __future__ import annotations

import numpy as np

EDGES: tuple[float, ...] = (-1.0, 30.0, 50.0, 70.0, float("inf"))
LABELS: tuple[str, ...] = ("(-1, 30]", "(30, 50]", "(50, 70]", "(70, inf)")
N_BANDS = len(LABELS)


def band_index(ibu: float | np.ndarray) -> np.ndarray:
    """Band number (0-3) of each IBU value; right-closed intervals as the labels say."""
    values = np.atleast_1d(np.asarray(ibu, dtype=float))
    if np.isnan(values).any():
        raise ValueError("IBU values must not be NaN")
    # right=True: a value equal to an upper edge stays in the lower band (30 -> band 0).
    index = np.digitize(values, EDGES[1:-1], right=True)
    return index


def band_label(index: int) -> str:
    return LABELS[int(index)]
