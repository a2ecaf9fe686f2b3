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

import numpy as np

__all__ = ["COLORS", "CMAP", "DIVERGING_CMAP", "MIN_FONT_SIZE", "FIGURE_FORMATS", "use",
           "plain_log_ticks"]

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


def _plain_number(value: float) -> str:
    """``value`` written out: 0.1, 1, 10, 4096, 262144 (six significant digits at most)."""
    if float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(float(f"{value:.6g}"), trim="-")


def plain_log_ticks(ax, axis: str = "both"):
    """Label the logarithmic axes of ``ax`` with plain numbers: 0.1, 1, 10 and 8, 64, 4096.

    matplotlib labels a log axis with powers (:math:`10^{-1}`, :math:`2^{12}`), whose value sits
    in the exponent, a script too small to read on a phone. The labels keep the ticks
    matplotlib chose (major, and the minor ones it labels); only their text changes. Call it
    after the axis is made logarithmic (``set_xscale``, ``loglog``, ``semilogx`` reset the
    labels); an axis that is not logarithmic, or whose labels were set by hand, is left as it
    is. For values in the millions, divide the data and say so in the axis label
    ("elements moved (millions)").

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to label.
    axis : {"both", "x", "y"}, default "both"
        Which of its axes.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.

    Raises
    ------
    ValueError
        If ``axis`` is not "both", "x" or "y".

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = Figure().add_subplot()
    >>> _ = ax.loglog([0.1, 100], [8, 4096], base=2)
    >>> ax.set_xscale("log")
    >>> _ = plain_log_ticks(ax)
    >>> ax.xaxis.get_major_formatter()(0.1), ax.yaxis.get_major_formatter()(4096)
    ('0.1', '4096')

    See Also
    --------
    use : the book's style.
    Chapter 9, *The cost of attention*, draws most of the book's log axes.
    """
    from matplotlib.ticker import Formatter, LogFormatter

    if axis not in ("both", "x", "y"):
        raise ValueError(f'axis must be "both", "x" or "y", got {axis!r}')

    class PlainLogFormatter(Formatter):
        """Labels the ticks ``inner`` labels, with the plain number instead of a power."""

        def __init__(self, inner):
            self.inner = inner

        def set_axis(self, axis_):
            super().set_axis(axis_)
            self.inner.set_axis(axis_)

        def set_locs(self, locs):
            super().set_locs(locs)
            self.inner.set_locs(locs)

        def __call__(self, x, pos=None):
            return _plain_number(x) if self.inner(x, pos) else ""

    axes = {"x": [ax.xaxis], "y": [ax.yaxis], "both": [ax.xaxis, ax.yaxis]}[axis]
    for a in axes:
        if a.get_scale() != "log":
            continue
        for get, set_ in ((a.get_major_formatter, a.set_major_formatter),
                          (a.get_minor_formatter, a.set_minor_formatter)):
            if isinstance(get(), LogFormatter):
                set_(PlainLogFormatter(get()))
    return ax
