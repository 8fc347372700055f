"""What every figure of the project shares: colours that stay apart for readers with a
colour-vision deficiency and in greyscale print, and sizes that stay legible where the
notebooks are read (Jupyter, Colab and GitHub shrink a wider image to their column)."""

from __future__ import annotations

from typing import Any

from matplotlib import colors, style

# Matplotlib's "petroff10" cycle: chosen to stay distinguishable under deuteranopia,
# protanopia and tritanopia (Petroff 2021). The plots name the colours they use.
PALETTE: tuple[str, ...] = tuple(style.library["petroff10"]["axes.prop_cycle"].by_key()["color"])
BLUE, ORANGE, RED, GREY, PURPLE, BROWN = PALETTE[:6]
CYAN = PALETTE[9]  # a seventh, for the data-flow diagram's kinds of resource

# Told apart by more than colour: the second of two series is hatched.
HATCHES = ("", "//", "..", "xx")

# At the inline backend's 100 dpi, 9 inches is 900 px: about the column Colab and GitHub
# give an output, so a figure no wider is shown at its own size, not shrunk.
MAX_WIDTH = 9.0  # inches
MIN_FONT_SIZE = 8  # points, in a figure no wider than MAX_WIDTH


def text_color_on(background: Any) -> str:
    """Black or white, whichever contrasts more with `background`: a fixed threshold on the
    value of a colour map leaves white text on its mid-tones, hard to read."""
    black, white = contrast_ratio(background, "black"), contrast_ratio(background, "white")
    return "black" if black >= white else "white"


def contrast_ratio(first: Any, second: Any) -> float:
    """WCAG contrast ratio of two colours, from 1 (none) to 21 (black on white)."""
    lighter, darker = sorted((_relative_luminance(first), _relative_luminance(second)))[::-1]
    return (lighter + 0.05) / (darker + 0.05)


def _relative_luminance(color: Any) -> float:
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in colors.to_rgb(color)
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
