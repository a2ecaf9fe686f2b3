"""One look for every figure of the book.

Each role has one colour, kept through every chapter: a query is always blue, a key always
orange, a value always green; a context vector, attention's output, and a model *with*
attention are vermillion, and the same model *without* it grey, as is that model's fixed-length
context (Chapter 1's diagram). The palette is Okabe and Ito's, which stays distinguishable under
the common forms of colour blindness. Figures are opaque and light, so they read the same on
the light theme and as a light card on the dark theme. Captions are the titles: the style
sets none, and axis labels are written in lower case by the chapters.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["COLORS", "CMAP", "DIVERGING_CMAP", "MIN_FONT_SIZE", "FIGURE_FORMATS", "use"]

#: Colour of each role, from Okabe and Ito's palette.
COLORS: dict[str, str] = {
    "query": "#0072B2",
    "key": "#E69F00",
    "value": "#009E73",
    "attention": "#D55E00",
    # A context vector, attention's output (the diagrams of attnbook.diagrams), is drawn in the
    # vermillion of a model with attention: the one thing attention adds to a model.
    "context": "#D55E00",
    # A model without attention, and its fixed-length context c (attnbook.diagrams).
    "no_attention": "#6E6E6E",
    "reference": "#CC79A7",
    "highlight": "#56B4E9",
}

#: Sequential colour map for attention weights (perceptually uniform, colour-blind safe).
CMAP = "viridis"

#: Diverging colour map for signed quantities such as scores or position encodings.
DIVERGING_CMAP = "PuOr"


#: Smallest font size, in points at the figure's natural size, of any text in a figure. The site
#: shows a figure at its natural size on a desktop screen (1 pt = 4/3 px), where 11 pt is 14.7 px,
#: above the page's small print (14 px: captions, code); on a 390 px phone a figure spans the
#: screen, and a figure up to 6.4 in wide keeps 11 pt text at 9 px or more. tests/test_layout.py
#: measures both on the built site.
MIN_FONT_SIZE = 11

#: The formats in which a notebook returns each figure. SVG is for the site (vector, crisp at
#: any zoom; a heatmap embeds its pixels) and PDF for the LaTeX builder (vector in the PDF
#: edition); myst-nb picks SVG for HTML and PDF for LaTeX, the other stays in the notebook.
FIGURE_FORMATS = ("svg", "pdf")


def _set_notebook_formats() -> None:
    """Ask the notebook's inline backend for FIGURE_FORMATS (nothing outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: no notebook to configure
        return
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats(*FIGURE_FORMATS)


def use() -> None:
    """Apply the book's matplotlib style to every figure drawn after the call.

    Inside a notebook it also makes the inline backend return every figure as SVG (the site)
    and PDF (the PDF edition): see :data:`FIGURE_FORMATS`.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from attnbook import style
    >>> style.use()
    >>> plt.rcParams["axes.spines.top"]
    False

    See Also
    --------
    COLORS : the palette, one colour per role.
    Chapter 1, *The bottleneck problem*, and every chapter after it draw with it.
    """
    import matplotlib.pyplot as plt

    path = resources.files("attnbook").joinpath("attnbook.mplstyle")
    with resources.as_file(path) as style_file:
        plt.style.use(str(style_file))
    _set_notebook_formats()
