"""One look for every figure of the book.

Each role has one colour, kept through every chapter: a query is always blue, a key always
orange, a value always green; a model *with* attention is always vermillion and the same
model *without* it grey. The palette is Okabe and Ito's, which stays distinguishable under
the common forms of colour blindness. Figures are opaque and light, so they read the same on
the light theme and as a light card on the dark theme. Captions are the titles: the style
sets none, and axis labels are written in lower case by the chapters.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["COLORS", "CMAP", "DIVERGING_CMAP", "use"]

#: Colour of each role, from Okabe and Ito's palette.
COLORS: dict[str, str] = {
    "query": "#0072B2",
    "key": "#E69F00",
    "value": "#009E73",
    "attention": "#D55E00",
    "no_attention": "#6E6E6E",
    "reference": "#CC79A7",
    "highlight": "#56B4E9",
}

#: Sequential colour map for attention weights (perceptually uniform, colour-blind safe).
CMAP = "viridis"

#: Diverging colour map for signed quantities such as scores or position encodings.
DIVERGING_CMAP = "PuOr"


def use() -> None:
    """Apply the book's matplotlib style to every figure drawn after the call.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from attnbook import style
    >>> style.use()
    >>> plt.rcParams["axes.spines.top"]
    False
    """
    import matplotlib.pyplot as plt

    path = resources.files("attnbook").joinpath("attnbook.mplstyle")
    with resources.as_file(path) as style_file:
        plt.style.use(str(style_file))
