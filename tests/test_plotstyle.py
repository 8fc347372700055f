"""The figures' shared colours stay apart for readers with a colour-vision deficiency, and
text on a coloured cell keeps its contrast."""

import itertools

import numpy as np
import pytest
from matplotlib import colormaps, colors

from brewops import plotstyle

# Machado, Oliveira & Fernandes (2009), severity 1: linear RGB as the dichromat sees it.
DICHROMACY = {
    "deuteranopia": [
        [0.367322, 0.860646, -0.227968],
        [0.280085, 0.672501, 0.047413],
        [-0.011820, 0.042940, 0.968881],
    ],
    "protanopia": [
        [0.152286, 1.052583, -0.204868],
        [0.114503, 0.786281, 0.099216],
        [-0.003882, -0.048116, 1.051998],
    ],
    "tritanopia": [
        [1.255528, -0.076749, -0.178779],
        [-0.078411, 0.930809, 0.147602],
        [0.004733, 0.691367, 0.303900],
    ],
}
NAMED = {
    "BLUE": plotstyle.BLUE,
    "ORANGE": plotstyle.ORANGE,
    "RED": plotstyle.RED,
    "GREY": plotstyle.GREY,
    "PURPLE": plotstyle.PURPLE,
    "BROWN": plotstyle.BROWN,
    "CYAN": plotstyle.CYAN,
}
APART = 15  # CIELAB ΔE: two colours this far apart are told apart at a glance


def _lab(color: str, vision: str | None = None) -> np.ndarray:
    rgb = np.array(colors.to_rgb(color))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    if vision:
        linear = np.clip(np.array(DICHROMACY[vision]) @ linear, 0, 1)
    srgb_to_xyz = [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    xyz = np.array(srgb_to_xyz) @ linear / [0.95047, 1.0, 1.08883]  # D65 white
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _distance(first: str, second: str, vision: str | None = None) -> float:
    return float(np.linalg.norm(_lab(first, vision) - _lab(second, vision)))


@pytest.mark.parametrize("vision", [None, *DICHROMACY])
def test_the_named_colours_stay_apart(vision):
    close = [
        (a, b, round(_distance(NAMED[a], NAMED[b], vision), 1))
        for a, b in itertools.combinations(NAMED, 2)
        if _distance(NAMED[a], NAMED[b], vision) < APART
    ]
    assert not close, close


def test_the_simulation_merges_what_deuteranopes_confuse():
    # the red and green of tab10 (once the validation figure's pair) look alike to them
    assert _distance("tab:red", "tab:green") > 100
    assert _distance("tab:red", "tab:green", "deuteranopia") < APART


def test_two_series_differ_in_lightness_too():
    # a greyscale print keeps the model's two evaluations apart, hatching aside
    assert abs(_lab(plotstyle.PALETTE[0])[0] - _lab(plotstyle.PALETTE[1])[0]) >= APART
    assert plotstyle.HATCHES[0] != plotstyle.HATCHES[1]


@pytest.mark.parametrize("cmap", ["Blues", "RdBu_r"])
def test_text_on_any_shade_of_the_maps_keeps_its_contrast(cmap):
    for value in np.linspace(0, 1, 101):
        background = colormaps[cmap](value)
        text = plotstyle.text_color_on(background)
        assert plotstyle.contrast_ratio(text, background) >= 4.5, (cmap, value, text)


def test_contrast_ratio_runs_from_one_to_twenty_one():
    assert plotstyle.contrast_ratio("black", "white") == pytest.approx(21)
    assert plotstyle.contrast_ratio("white", "black") == pytest.approx(21)
    assert plotstyle.contrast_ratio(plotstyle.RED, plotstyle.RED) == pytest.approx(1)
    # WCAG's published figures: the channels weigh as the eye weighs them
    assert plotstyle.contrast_ratio("#ff0000", "white") == pytest.approx(4.0, abs=0.01)
    assert plotstyle.contrast_ratio("#0000ff", "white") == pytest.approx(8.59, abs=0.01)
    assert plotstyle.contrast_ratio("#777777", "white") == pytest.approx(4.48, abs=0.01)


def test_the_legibility_limits_are_those_of_a_notebooks_output_column():
    # the figures' tests measure against these: a looser limit would pass a shrunk figure
    dpi = 100  # the inline backend's
    assert plotstyle.MAX_WIDTH * dpi <= 900  # px: the column Colab and GitHub give an output
    assert plotstyle.MIN_FONT_SIZE >= 8


# (least, greatest) hue in degrees, least saturation: what each name promises a reader
HUES = {
    "BLUE": (190, 240, 0.5),
    "ORANGE": (25, 50, 0.5),
    "RED": (0, 20, 0.8),
    "PURPLE": (260, 300, 0.5),
    "BROWN": (0, 30, 0.3),
    "CYAN": (170, 200, 0.25),
}


@pytest.mark.parametrize("name", HUES)
def test_each_named_colour_is_the_colour_its_name_says(name):
    hue, saturation, _ = colors.rgb_to_hsv(colors.to_rgb(NAMED[name]))
    least, greatest, least_saturation = HUES[name]
    assert least <= hue * 360 <= greatest and saturation >= least_saturation


def test_grey_is_grey():
    assert colors.rgb_to_hsv(colors.to_rgb(plotstyle.GREY))[1] < 0.15
