"""Schematic diagrams of the book's architectures, drawn by code when the book is built.

One function per diagram, each returning a ``matplotlib.figure.Figure`` (created without
pyplot, so that nothing is shown twice and nothing stays open): in a chapter, the figure is the
cell's last expression. Every diagram uses the symbols of the chapter it belongs to, in the
book's palette with one colour per role (:data:`ROLES`): a box or arrow of a role has the role's
colour as its edge and a light tint of it as its fill, so that its dark label keeps its contrast.
Everything else is ink-grey on white, the opaque light card of every figure of the book (see
:mod:`attnbook.style`), which reads the same on the light and the dark theme. No text is smaller
than :data:`attnbook.style.MIN_FONT_SIZE` at the figure's natural size.

The docstring of each function suggests a caption and an alt text for the chapter.
"""

from __future__ import annotations

import numpy as np
from matplotlib import rc_context
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.layout_engine import PlaceHolderLayoutEngine
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

from attnbook import style

__all__ = [
    "ROLES",
    "SDPA_SIZES",
    "tint",
    "encoder_decoder",
    "bahdanau_step",
    "scaled_dot_product_attention",
    "multi_head_attention",
    "transformer_blocks",
    "flash_tiling",
]

#: The roles a diagram colours, each with its colour in :data:`attnbook.style.COLORS`.
ROLES = ("query", "key", "value", "context", "no_attention")

INK = "#1a1a1a"  # text: the style's text.color
LINE = "#333333"  # arrows and the outline of neutral boxes: the style's axes.edgecolor
PAPER = "#ffffff"
NEUTRAL = "#f2f2f2"  # fill of a box that has no role
MASKED = "#bdbdbd"  # a masked cell (the score is -inf, the weight zero)
FONT = style.MIN_FONT_SIZE + 1  # symbols; words, notes and shapes use MIN_FONT_SIZE
SMALL = style.MIN_FONT_SIZE
#: Symbols with a nested index (x_{T_x}): mathtext draws the inner index at 0.49 of the symbol,
#: 7.35 pt here, 9.8 px at a figure's natural size (a sub- or superscript's minimum on a desktop,
#: tests/test_layout.py).
NESTED = 15
#: The wide diagrams are drawn at ZOOM of their design size (coordinates stay in design
#: inches), about 5 inches wide: a phone then shows them at about 1.04 px per point (against
#: 0.84 at 6.4 inches), so that an 11 pt symbol's index shows at 8 px and a NESTED symbol's
#: inner index at 7.6 px, above the 7.5 px the site's tests ask of a script on a phone.
ZOOM = 0.8
RC = {"font.size": FONT, "text.color": INK, "mathtext.fontset": "dejavusans",
      "svg.fonttype": "path", "figure.constrained_layout.use": False}


def tint(color: str, amount: float = 0.22) -> str:
    """The fill of a box of colour ``color``: ``amount`` of it mixed with white.

    Parameters
    ----------
    color : str
        A matplotlib colour, usually ``style.COLORS[role]``.
    amount : float, default 0.22
        Share of ``color`` in the mix, in ``[0, 1]``.

    Returns
    -------
    str
        The mixed colour as ``#rrggbb``.

    Raises
    ------
    ValueError
        If ``amount`` is outside ``[0, 1]``.

    See Also
    --------
    attnbook.style.COLORS : the role colours (the notation page lists them).

    Examples
    --------
    >>> tint("#000000", 0.5)
    '#808080'
    >>> tint(style.COLORS["query"], 1.0) == style.COLORS["query"].lower()
    True
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}: it is the share of the colour")
    rgb = np.asarray(to_rgb(color))
    return to_hex(amount * rgb + (1.0 - amount) * np.ones(3))


def _role_style(role: str | None) -> tuple[str, str]:
    """(edge colour, fill colour) of a box of ``role`` (None: a neutral box)."""
    if role is None:
        return LINE, NEUTRAL
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {ROLES} or None")
    return style.COLORS[role], tint(style.COLORS[role])


class _Canvas:
    """A figure whose data coordinates are design inches from its lower-left corner.

    The figure is ``zoom`` times the design size: the drawing shrinks, while the text keeps its
    size in points, and lines their width.
    """

    def __init__(self, width: float, height: float, zoom: float = 1.0):
        self.zoom = zoom
        # The axes fill the figure and every mark is placed by hand, so the figure gets a layout
        # engine that does nothing. Without one (layout=None) matplotlib falls back to the
        # style's constrained layout whenever it resets the engine, as savefig does after
        # drawing, and constrained layout then warns that it has no gridspec to lay out.
        self.fig = Figure(figsize=(width * zoom, height * zoom), facecolor=PAPER,
                          layout=PlaceHolderLayoutEngine(adjust_compatible=True,
                                                         colorbar_gridspec=True))
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(0, height)
        self.ax.axis("off")

    def fit_height(self, top: float) -> None:
        """Make the figure end at ``top`` inches (the drawing stays where it is)."""
        self.fig.set_size_inches(self.fig.get_figwidth(), top * self.zoom)
        self.ax.set_ylim(0, top)

    def text(self, x, y, s, size=FONT, **kw):
        kw.setdefault("ha", "center")
        kw.setdefault("va", "center")
        return self.ax.text(x, y, s, fontsize=size, color=kw.pop("color", INK), **kw)

    def box(self, x, y, w, h, label=None, role=None, size=FONT, lw=1.4, dashed=False,
            fill=None, pad=0.04):
        """A rounded box centred on (x, y); its gid names the role for the tests."""
        edge, face = _role_style(role)
        patch = FancyBboxPatch((x - w / 2 + pad, y - h / 2 + pad), w - 2 * pad, h - 2 * pad,
                               boxstyle=f"round,pad={pad}", linewidth=lw, edgecolor=edge,
                               facecolor=fill or face, linestyle="--" if dashed else "-",
                               gid=f"role:{role}" if role else None, zorder=2)
        self.ax.add_patch(patch)
        if label is not None:
            self.text(x, y, label, size=size, zorder=3)
        return patch

    def arrow(self, start, end, role=None, lw=1.3, style_="-|>", connection="arc3", dashed=False,
              shrink=0.0):
        color = style.COLORS[role] if role else LINE
        patch = FancyArrowPatch(start, end, arrowstyle=style_, mutation_scale=10,
                                linewidth=lw, color=color, connectionstyle=connection,
                                shrinkA=shrink, shrinkB=shrink, linestyle="--" if dashed else "-",
                                gid=f"role:{role}" if role else None, zorder=1)
        self.ax.add_patch(patch)
        return patch

    def line(self, xs, ys, role=None, lw=1.3, dashed=False):
        color = style.COLORS[role] if role else LINE
        (artist,) = self.ax.plot(xs, ys, color=color, lw=lw, linestyle="--" if dashed else "-",
                                 solid_capstyle="butt", gid=f"role:{role}" if role else None,
                                 zorder=1)
        return artist

    def node(self, x, y, symbol, r=0.11):
        """A small circle holding an operator (+, ×, Σ)."""
        self.ax.add_patch(Circle((x, y), r, facecolor=PAPER, edgecolor=LINE, linewidth=1.2,
                                 zorder=2))
        self.text(x, y, symbol, size=FONT, zorder=3)

    def cells(self, x, y, rows, cols, cell, faces, role=None, edge=None, lw=0.6):
        """A matrix of rows x cols square cells; (x, y) is its upper-left corner."""
        faces = np.broadcast_to(np.asarray(faces, dtype=object), (rows, cols))
        edge = edge or (style.COLORS[role] if role else LINE)
        for r in range(rows):
            for c in range(cols):
                self.ax.add_patch(Rectangle((x + c * cell, y - (r + 1) * cell), cell, cell,
                                            facecolor=faces[r, c], edgecolor=edge, linewidth=lw,
                                            gid=f"role:{role}" if role else None, zorder=2))
        frame = Rectangle((x, y - rows * cell), cols * cell, rows * cell, fill=False,
                          edgecolor=edge, linewidth=1.3, zorder=3,
                          gid=f"role:{role}" if role else None)
        self.ax.add_patch(frame)
        return frame

    def strip(self, x, y, width, height, faces):
        """A colour key: ``faces`` side by side from left to right, vertically centred on y."""
        step = width / len(faces)
        for i, face in enumerate(faces):
            self.ax.add_patch(Rectangle((x + i * step, y - height / 2), step, height,
                                        facecolor=face, linewidth=0, zorder=2))
        self.ax.add_patch(Rectangle((x, y - height / 2), width, height, fill=False,
                                    edgecolor=LINE, linewidth=1.0, zorder=3))

    def legend(self, x, y, roles, labels=None, step=1.05):
        """Swatches of ``roles`` in a row starting at (x, y)."""
        labels = labels or roles
        for i, (role, label) in enumerate(zip(roles, labels)):
            self.box(x + i * step, y, 0.22, 0.2, role=role, pad=0.02)
            self.text(x + i * step + 0.16, y, label, size=SMALL, ha="left")


def _validate_count(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high} (the diagram has room "
                         f"for that many), got {value!r}")


def encoder_decoder() -> Figure:
    """The encoder-decoder of Chapter 1 and its fixed-length context.

    The encoder reads ``x_1 ... x_{T_x}`` into states ``h_t = f(h_{t-1}, x_t)``; one vector
    ``c`` of size ``d_c``, computed once from them, is all the decoder sees of the source. At
    every step the decoder's state ``s_i = g(s_{i-1}, y_{i-1}, c)`` reads it, and so does the
    output layer, ``p(y_i | y_{<i}, x) = softmax([s_i; c; E y_{i-1}] W^out + b^out)``, which
    also reads the previous word a second time: the figure draws every input of both
    equations. ``c`` has the grey of a model without attention (``style.COLORS["no_attention"]``),
    not the vermillion of a context vector made by attention.

    Returns
    -------
    matplotlib.figure.Figure
        A 5.0 x 2.8 inch diagram (6.2 x 3.5 design inches drawn at ``ZOOM``).

    See Also
    --------
    bahdanau_step : the decoder with attention (Chapter 4), which has no bottleneck.
    Chapter 1, *The bottleneck problem*, is the chapter it is drawn for.

    Notes
    -----
    Chapter 1, *The bottleneck problem*: equations ``eq-ch1-encoder`` and ``eq-ch1-decoder``,
    definition ``def-ch1-fixed-context``. In code, ``Seq2Seq`` with ``attention="none"``.

    Suggested caption and alt text, for the ``mystnb`` metadata of the chapter's figure cell::

        caption: >-
          The encoder–decoder without attention. The encoder's states $\\vec{h}_t$ are
          reduced to one context vector $\\vec{c}$ of fixed size $d_c$, drawn in the grey of
          a model without attention. At every step the decoder's state $\\vec{s}_i$ reads
          $\\vec{c}$, and so does the output layer (softmax), which also reads $\\vec{s}_i$
          and the previous word $y_{i-1}$ again, as its embedding $E y_{i-1}$; the decoder
          sees nothing else of the source.
        alt: >-
          Diagram. Source words x 1, x 2 to x T x enter a row of encoder boxes h 1, h 2 to h
          T x, linked left to right. The last one feeds a single grey box c, the
          fixed-length context, of size d c. A thick grey line from c runs above the
          decoder and drops beside every step, into the state box s i and into a softmax
          box above it. The decoder boxes s 1, s 2 to s T y are linked left to right; each
          reads the previous word y 0 to y T y minus 1 from below, and a branch of that word
          also enters the softmax box, which emits y 1 to y T y above.

    Examples
    --------
    >>> fig = encoder_decoder()
    >>> fig.get_size_inches().round(1).tolist()
    [5.0, 2.8]
    """
    from matplotlib.patheffects import Normal, Stroke

    grey = style.COLORS["no_attention"]
    # A line that crosses another is drawn over it with a white gap on both sides.
    hop = [Stroke(linewidth=5, foreground=PAPER), Normal()]
    with rc_context(RC):
        cv = _Canvas(6.2, 3.5, zoom=ZOOM)
        y_word, y_box, h_box = 0.3, 1.35, 0.52
        y_out, h_out, w_out = 2.22, 0.4, 0.98  # the output layer above each state
        y_bus = 3.02  # the context's wire to every step, above the decoder
        w_enc, w_dec = 0.52, 0.56
        enc = [(0.35, r"$\mathbf{h}_1$", r"$x_1$"), (1.05, r"$\mathbf{h}_2$", r"$x_2$"),
               (2.05, r"$\mathbf{h}_{T_x}$", r"$x_{T_x}$")]
        dec = [(3.78, r"$\mathbf{s}_1$", r"$y_0$", r"$y_1$"),
               (5.5, r"$\mathbf{s}_{T_y}$", r"$y_{T_y-1}$", r"$y_{T_y}$")]

        def chain(states, w):
            (a, *_), (b, *_), (c, *_) = states
            cv.arrow((a + w / 2, y_box), (b - w / 2, y_box))
            cv.arrow((b + w / 2, y_box), (b + w / 2 + 0.14, y_box))
            cv.text((b + c) / 2, y_box, r"$\cdots$")
            cv.arrow((c - w / 2 - 0.14, y_box), (c - w / 2, y_box))

        for x, state, word in enc:
            cv.box(x, y_box, w_enc, h_box, state, size=NESTED)
            cv.text(x, y_word, word, size=NESTED)
            cv.arrow((x, y_word + 0.15), (x, y_box - h_box / 2))
        chain(enc, w_enc)
        cv.text(0.05, 2.22, r"encoder  $\mathbf{h}_t = f(\mathbf{h}_{t-1}, x_t)$", ha="left")
        # The context: one vector of fixed size, made once, read at every decoder step.
        x_c, w_c = 2.78, 0.44
        cv.box(x_c, y_box, w_c, h_box, r"$\mathbf{c}$", role="no_attention", lw=2.0,
               fill=tint(grey, 0.4), size=NESTED)
        cv.arrow((enc[2][0] + w_enc / 2, y_box), (x_c - w_c / 2, y_box), role="no_attention",
                 lw=1.8)
        cv.text(x_c, y_word, r"size $d_c$")
        lw_c = 2.2  # the context's wires, thicker than the others
        side = 0.58  # distance of the wires beside a step from its centre
        cv.line([x_c, x_c, dec[-1][0] - side], [y_box + h_box / 2, y_bus, y_bus],
                role="no_attention", lw=lw_c)
        for x, state, prev, out in dec:
            # c drops beside the step: into the output layer, then into the state.
            x_drop, y_turn = x - side, y_box + h_box / 2 + 0.16
            cv.line([x_drop, x_drop, x - 0.13], [y_bus, y_turn, y_turn], role="no_attention",
                    lw=lw_c)
            cv.arrow((x_drop, y_out), (x - w_out / 2, y_out), role="no_attention", lw=lw_c)
            cv.arrow((x - 0.13, y_turn), (x - 0.13, y_box + h_box / 2), role="no_attention",
                     lw=lw_c)
            cv.box(x, y_box, w_dec, h_box, state, size=NESTED)
            cv.box(x, y_out, w_out, h_out, "softmax", size=SMALL)
            cv.arrow((x + 0.08, y_box + h_box / 2), (x + 0.08, y_out - h_out / 2))
            cv.arrow((x, y_out + h_out / 2), (x, 2.62))
            cv.text(x, 2.78, out, size=NESTED)
            # The previous word: into the state, and (as E y_{i-1}) into the output layer.
            y_fork = 0.78
            cv.text(x, y_word, prev, size=NESTED)
            cv.arrow((x, y_word + 0.15), (x, y_box - h_box / 2))
            cv.ax.add_patch(Circle((x, y_fork), 0.035, color=LINE, zorder=3))
            riser = cv.line([x, x + side, x + side], [y_fork, y_fork, y_out])
            riser.set_path_effects(hop)
            riser.set_zorder(1.5)
            cv.arrow((x + side, y_out), (x + w_out / 2, y_out))
        (a, *_), (b, *_) = dec
        cv.arrow((a + w_dec / 2, y_box), (a + w_dec / 2 + 0.45, y_box))
        cv.text((a + b) / 2 + 0.06, y_box, r"$\cdots$")
        cv.arrow((b - w_dec / 2 - 0.28, y_box), (b - w_dec / 2, y_box))
        cv.text(6.2, 3.3, r"decoder  $\mathbf{s}_i = g(\mathbf{s}_{i-1}, y_{i-1}, \mathbf{c})$",
                ha="right")
    return cv.fig


#: Illustrative weights of the Bahdanau step, in the columns j = 1, j, T_x that it draws.
_STEP_WEIGHTS = (0.08, 0.64, 0.12)


def bahdanau_step() -> Figure:
    """One decoder step of Bahdanau et al.'s model (RNNsearch), as Chapter 4 writes it.

    The previous state ``s_{i-1}`` is the query: projected to ``q = s_{i-1} W_q``, it meets
    every key ``k_j = h_j W_k`` in a score ``e_ij = tanh(s_{i-1} W_q + h_j W_k) w_v``, that is
    ``tanh(q + k_j) w_v`` (equation ``eq-ch4-decoder``, row vectors); a softmax over ``j``
    turns the scores into weights ``alpha_ij``; the context ``c_i`` is the weighted sum of the
    annotations ``h_j`` themselves; and the GRU makes the new state ``s_i`` from ``s_{i-1}`` and
    ``[E y_{i-1}; c_i]``.

    Returns
    -------
    matplotlib.figure.Figure
        A 5.0 x 4.3 inch diagram (6.2 x 5.4 design inches drawn at ``ZOOM``).

    See Also
    --------
    encoder_decoder : the model without attention (Chapter 1).
    Chapter 4, *Learning to align and translate*, is the chapter it is drawn for.

    Notes
    -----
    Chapter 4, *Learning to align and translate*: equation ``eq-ch4-decoder`` and algorithm
    ``alg-ch4-step``. In code, ``Seq2Seq._step``.

    Suggested caption and alt text, for the ``mystnb`` metadata of the chapter's figure cell::

        caption: >-
          One decoding step of RNNsearch. The previous state $\\vec{s}_{i-1}$ is the query
          (blue): it scores every annotation $\\vec{h}_j$ through its key $\\vec{k}_j =
          \\vec{h}_j W_k$ (orange); the softmax over $j$ turns the scores $e_{ij}$ into
          weights $\\alpha_{ij}$ (the heights of the vermillion bars); the annotations are also the
          values (green), and their weighted sum is the context $\\vec{c}_i$ (vermillion),
          which the GRU reads to make $\\vec{s}_i$.
        alt: >-
          Diagram. A row of annotation boxes h 1, h j and h T x at the top. Below each,
          an orange key box k j feeds a score box e i j, which also receives a blue line
          from the query, the previous state s i minus 1 at the bottom left. Each score
          becomes a weight alpha i j, drawn as a vermillion bar; the middle one is tallest. A green
          line from each annotation is multiplied by its weight and the products are summed
          into a vermillion box c i, which enters a GRU together with s i minus 1 and E y i
          minus 1; the GRU outputs s i.

    Examples
    --------
    >>> fig = bahdanau_step()
    >>> fig.get_size_inches().round(1).tolist()
    [5.0, 4.3]
    """
    cols = [(1.95, "1"), (3.55, "j"), (5.45, "T_x")]
    y_h, y_k, y_bus, y_e, y_bar, y_mul, y_sum, y_c, y_rnn = (
        4.95, 4.3, 3.85, 3.45, 2.3, 1.95, 1.55, 1.05, 0.45)
    x_c = 4.5  # the column of the sum, the context and the GRU
    # Larger than the book's minimum: the figure is 5 inches wide and a phone shows it at
    # about 80 % of its natural size.
    big, small = NESTED + 1, NESTED
    with rc_context(RC):
        cv = _Canvas(6.2, 5.4, zoom=ZOOM)
        # The query: s_{i-1} projected by W_q, on a bus that reaches every score.
        x_q = 0.62
        cv.box(x_q, y_rnn, 0.78, 0.46, r"$\mathbf{s}_{i-1}$", role="query", lw=2.0,
               size=big)
        cv.line([x_q, x_q, cols[-1][0] - 0.36], [y_rnn + 0.23, y_bus, y_bus], role="query", lw=1.8)
        # The equations and the note in the left margin: smaller, having no nested index.
        cv.text(0.0, y_bus + 0.17, r"$\mathbf{q} = \mathbf{s}_{i-1} W_q$", size=FONT, ha="left",
                color=style.COLORS["query"])
        cv.text(0.0, y_k, r"$\mathbf{k}_j = \mathbf{h}_j W_k$", size=FONT, ha="left")
        weights = np.asarray(_STEP_WEIGHTS)
        for (x, j), a in zip(cols, weights):
            cv.box(x, y_h, 0.66, 0.44, rf"$\mathbf{{h}}_{{{j}}}$", size=big)
            xk = x - 0.18
            cv.arrow((xk, y_h - 0.22), (xk, y_k + 0.18), role="key")
            cv.box(xk, y_k, 0.56, 0.36, rf"$\mathbf{{k}}_{{{j}}}$", role="key", size=small)
            cv.arrow((xk, y_k - 0.18), (xk, y_e + 0.2))
            cv.arrow((x - 0.38, y_bus), (x - 0.38, y_e + 0.2), role="query", lw=1.8)
            cv.box(xk, y_e, 0.6, 0.4, rf"$e_{{i{j}}}$", size=small)
            # The weight: a bar in the attention colour, whose height follows alpha.
            cv.arrow((xk, y_e - 0.2), (xk, y_bar + 0.78))
            cv.text(xk, y_bar + 0.6, rf"$\alpha_{{i{j}}}$", size=small)
            cv.line([xk - 0.2, xk + 0.2], [y_bar, y_bar], lw=0.8)
            cv.ax.add_patch(Rectangle((xk - 0.13, y_bar), 0.26, 0.36 * a / weights.max(),
                                      facecolor=style.COLORS["attention"],
                                      edgecolor=style.COLORS["attention"],
                                      linewidth=0.8, zorder=2, gid="role:attention"))
            # The value path: the annotation itself, times its weight.
            xv = x + 0.24
            cv.line([xv, xv], [y_h - 0.22, y_mul + 0.11], role="value", lw=1.8)
            cv.arrow((xk + 0.1, y_bar - 0.03), (xv - 0.09, y_mul + 0.06),
                     connection="arc3,rad=0.25")
            cv.node(xv, y_mul, r"$\times$")
            cv.line([xv, xv], [y_mul - 0.11, y_sum], role="context", lw=1.8)
        for y in (y_h, y_k, y_e, y_bar + 0.3):
            for x in ((cols[0][0] + cols[1][0]) / 2 + 0.05, (cols[1][0] + cols[2][0]) / 2 + 0.05):
                cv.text(x, y, r"$\cdots$")
        # Beside the e -> alpha arrows it describes, between the query's line and its first arrow.
        cv.text(1.0, y_bar + 0.62, "softmax\nover $j$", size=FONT)
        # The context: the weighted sum of the annotations, read by the GRU.
        cv.line([cols[0][0] + 0.24, cols[-1][0] + 0.24], [y_sum, y_sum], role="context", lw=1.8)
        cv.node(x_c, y_sum, r"$\Sigma$", r=0.13)
        cv.arrow((x_c, y_sum - 0.13), (x_c, y_c + 0.2), role="context", lw=1.8)
        cv.box(x_c, y_c, 0.52, 0.4, r"$\mathbf{c}_i$", role="context", lw=2.0, size=big)
        cv.arrow((x_c, y_c - 0.2), (x_c, y_rnn + 0.23), role="context", lw=1.8)
        cv.box(x_c, y_rnn, 0.8, 0.46, r"$\mathrm{GRU}$", size=big)
        cv.arrow((x_q + 0.39, y_rnn), (x_c - 0.4, y_rnn))
        cv.text(3.3, y_rnn + 0.3, r"$E y_{i-1}$", size=small)
        cv.arrow((3.74, y_rnn + 0.26), (x_c - 0.4, y_rnn + 0.12), connection="arc3,rad=-0.1")
        cv.arrow((x_c + 0.4, y_rnn), (5.5, y_rnn))
        cv.box(5.84, y_rnn, 0.66, 0.46, r"$\mathbf{s}_i$", size=big)
    return cv.fig


def _example_scores(T_q: int, T_k: int, d_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed illustrative queries and keys (no randomness: the diagram is the same every build)."""
    i = np.arange(T_q)[:, None]
    j = np.arange(T_k)[None, :]
    q = np.cos(0.9 * np.arange(T_q)[:, None] + 1.3 * np.arange(d_k)[None, :])
    k = np.sin(0.7 * np.arange(T_k)[:, None] + 1.1 * np.arange(d_k)[None, :] + 0.4)
    s = q @ k.T / np.sqrt(d_k) + 0.6 * np.cos(i - j)
    return q, s


#: The illustrative sizes ``(T_q, T_k, d_k, d_v)`` that :func:`scaled_dot_product_attention`
#: draws for each mask (a chapter's caption states them and asserts them against this).
SDPA_SIZES = {"padding": (3, 4, 3, 2), "causal": (4, 4, 3, 2), None: (3, 4, 3, 2)}


def scaled_dot_product_attention(mask: str | None = "padding") -> Figure:
    """Scaled dot-product attention as a flow of shapes, as Chapter 5 writes it.

    ``S = Q K^T / sqrt(d_k)`` (``T_q x T_k``), the mask ``M`` (True = may attend) puts
    ``-inf`` where it is False, ``A = softmax(S)`` row by row, and ``O = A V``, whose row ``i``
    is the context vector ``c_i``. Each product is drawn in the matrix-multiplication layout:
    the right factor above the result, the left factor beside it.

    Parameters
    ----------
    mask : {"padding", "causal", None}, default "padding"
        Which mask to draw: the last key hidden from every query (padding, ``T_q = 3``,
        ``T_k = 4``), the future hidden from each query (causal, ``T_q = T_k = 4``), or none.

    Returns
    -------
    matplotlib.figure.Figure
        A 4.96 x 2.72 inch diagram (2.88 inches tall with the causal mask): 6.2 x 3.4 design
        inches drawn at ``ZOOM``.

    Raises
    ------
    ValueError
        If ``mask`` is not one of the three choices.

    See Also
    --------
    attnbook.scaled_dot_product_attention : the function drawn here (Chapter 5).
    Chapter 5, *Queries, keys, values: scaled dot-product attention*, is the chapter it is
    drawn for.

    Notes
    -----
    Chapter 5, *Queries, keys, values: scaled dot-product attention*: definition
    ``def-ch5-attention`` and equation ``eq-ch5-forward`` (``S``, ``A``, ``O``).

    Suggested caption and alt text, for the ``mystnb`` metadata of the chapter's figure cell::

        caption: >-
          Scaled dot-product attention as a flow of shapes ($T_q = 3$ queries, $T_k = 4$
          keys, $d_k = 3$, $d_v = 2$). Queries are blue, keys orange, values green and the
          output vermillion. The shades of $S$ and $A$ are illustrative values, read on the
          keys below the matrices: a score from negative (brown) through zero (white) to
          positive (purple), a weight from 0 (dark purple) to 1 (yellow). The mask $M$
          (True = may attend) hides the fourth key (grey): its score becomes $-\\infty$
          and its weight exactly zero. Each row of $A$ sums to one.
        alt: >-
          Diagram of matrices. A blue 3 by 3 matrix Q beside and an orange 3 by 4 matrix K
          transposed above give the 3 by 4 score matrix S, equal to Q K transposed over the
          square root of d k. A 3 by 4 mask M whose last column is grey turns the last
          column of S grey, minus infinity. A softmax over each row gives the weights A,
          whose last column is zero. A beside and a green 4 by 2 matrix V above give the
          vermillion 3 by 2 output O, whose row i is the context vector c i. Below, two
          colour keys: scores from minus (brown) through white to plus (purple), weights
          from 0 (dark purple) to 1 (yellow); and the two cells of the mask, white for may
          attend and grey for a score of minus infinity and a weight of 0.

    Examples
    --------
    >>> fig = scaled_dot_product_attention(mask="causal")
    >>> fig.get_size_inches().round(2).tolist()
    [4.96, 2.88]
    """
    import matplotlib as mpl

    if mask not in ("padding", "causal", None):
        raise ValueError(f'mask must be "padding", "causal" or None, got {mask!r}')
    T_q, T_k, d_k, d_v = SDPA_SIZES[mask]
    keep = np.ones((T_q, T_k), dtype=bool)
    if mask == "padding":
        keep[:, -1] = False
    elif mask == "causal":
        keep = np.tril(keep)
    _, s = _example_scores(T_q, T_k, d_k)
    s_masked = np.where(keep, s, -np.inf)
    a = np.exp(s_masked - s_masked.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    diverging, sequential = mpl.colormaps[style.DIVERGING_CMAP], mpl.colormaps[style.CMAP]
    bound = np.abs(s).max()
    s_faces = np.vectorize(lambda v: to_hex(diverging(0.5 + 0.5 * v / bound)), otypes=[object])(s)
    masked_faces = np.where(keep, s_faces, MASKED)
    a_faces = np.vectorize(lambda v: to_hex(sequential(v)), otypes=[object])(a)
    a_faces = np.where(keep, a_faces, to_hex(sequential(0.0)))

    u = 0.2  # one cell
    y0 = 1.0 + T_q * u + 0.55  # top edge of the results' row (two rows of keys below)
    with rc_context(RC):
        cv = _Canvas(6.2, y0 + max(d_k, T_k) * u + 0.45, zoom=ZOOM)
        q_face, k_face, v_face, o_face = (tint(style.COLORS[r], 0.3)
                                          for r in ("query", "key", "value", "context"))
        y_mid = y0 - T_q * u / 2
        y_lab = y0 - T_q * u - 0.2

        def label(x, name, shape):
            if name:
                cv.text(x, y_lab, name)
            cv.text(x, y_lab - 0.3, shape, size=SMALL)

        # S = Q K^T / sqrt(d_k): K^T above S, Q to its left.
        x_q = 0.05
        x_s = x_q + d_k * u + 0.1
        cv.cells(x_q, y0, T_q, d_k, u, q_face, role="query")
        cv.cells(x_s, y0 + d_k * u + 0.1, d_k, T_k, u, k_face, role="key")
        cv.cells(x_s, y0, T_q, T_k, u, s_faces)
        cv.text(x_q + d_k * u / 2, y0 + 0.2, "$Q$")
        cv.text(x_s - 0.08, y0 + d_k * u * 0.75 + 0.1, r"$K^\top$", ha="right")
        label(x_q + d_k * u / 2, "", r"$T_q \times d_k$")
        label(x_s + T_k * u / 2, r"$S = QK^\top / \sqrt{d_k}$", r"$T_q \times T_k$")
        # The mask M feeds the step from S to the masked scores.
        x_sm = x_s + T_k * u + 0.7
        um = 0.15
        x_m = (x_s + T_k * u + x_sm) / 2 - T_k * um / 2
        cv.arrow((x_s + T_k * u + 0.06, y_mid), (x_sm - 0.06, y_mid))
        cv.cells(x_m, y_mid + 0.12 + T_q * um, T_q, T_k, um, np.where(keep, PAPER, MASKED))
        cv.text(x_m + T_k * um / 2, y_mid + 0.32 + T_q * um, "$M$")
        cv.cells(x_sm, y0, T_q, T_k, u, masked_faces)
        label(x_sm + T_k * u / 2, "masked", r"$T_q \times T_k$")
        # A = softmax(S), row by row.
        # "softmax" above the arrow, "each row" below it: the gap is wider than either line.
        x_a = x_sm + T_k * u + 0.9
        cv.arrow((x_sm + T_k * u + 0.06, y_mid), (x_a - 0.06, y_mid))
        cv.text((x_sm + T_k * u + x_a) / 2, y_mid + 0.15, "softmax", size=SMALL)
        cv.text((x_sm + T_k * u + x_a) / 2, y_mid - 0.15, "each row", size=SMALL)
        cv.cells(x_a, y0, T_q, T_k, u, a_faces)
        label(x_a + T_k * u / 2, r"$A = \mathrm{softmax}(S)$", r"$T_q \times T_k$")
        # O = A V: V above O, A to its left.
        x_o = x_a + T_k * u + 0.1
        cv.cells(x_o, y0 + T_k * u + 0.1, T_k, d_v, u, v_face, role="value")
        cv.cells(x_o, y0, T_q, d_v, u, o_face, role="context")
        cv.text(x_o + d_v * u + 0.08, y0 + T_k * u / 2 + 0.1, "$V$", ha="left")
        cv.text(x_o + d_v * u + 0.08, y0 - 0.12, "$O = AV$", ha="left")
        cv.text(x_o + d_v * u + 0.08, y0 - 0.42, r"row $i$: $\mathbf{c}_i$", size=SMALL, ha="left")
        label(x_o + d_v * u / 2 + 0.35, "", r"$T_q \times d_v$")
        # What the shades of the cells mean: the two colour maps, then the two cells of the mask.
        n_shades, w_shade, y_key = 9, 0.11, 0.62
        # x_low: where the strip's low end is labelled, past the name before it.
        for x, x_low, name, cmap, low, high in (
                (0.15, 1.2, "scores $S$:", diverging, r"$-$", "$+$"),
                (2.65, 3.8, "weights $A$:", sequential, "0", "1")):
            cv.text(x, y_key, name, size=SMALL, ha="left")
            cv.text(x_low, y_key, low, size=SMALL)
            x_strip = x_low + 0.14
            cv.strip(x_strip, y_key, n_shades * w_shade, u,
                     [to_hex(cmap(v)) for v in np.linspace(0, 1, n_shades)])
            cv.text(x_strip + n_shades * w_shade + 0.1, y_key, high, size=SMALL)
        for x, face, text in ((0.15, PAPER, "$M$ True: may attend"),
                              (2.65, MASKED, r"$M$ False: score $-\infty$, weight 0")):
            cv.cells(x, 0.22 + u / 2, 1, 1, u, face)
            cv.text(x + u + 0.08, 0.22, text, size=SMALL, ha="left")
    return cv.fig


def multi_head_attention(n_heads: int = 3) -> Figure:
    """Multi-head attention as Chapter 6 computes it: project, split, attend, concatenate, W^O.

    One product per input (``Q W^Q``, ``K W^K``, ``V W^V``) computes every head's projection
    at once; column block ``i`` of each product is head ``i``'s input (the split is a reshape);
    each head attends on its own; the heads are concatenated along the features and
    multiplied by ``W^O``.

    Parameters
    ----------
    n_heads : int, default 3
        Number of heads ``h`` drawn, from 2 to 4; each head has ``d_head = 2`` columns.

    Returns
    -------
    matplotlib.figure.Figure
        A 4.96 x 2.92 inch diagram (a little taller with four heads): 6.2 x 3.65 design inches
        drawn at ``ZOOM``.

    Raises
    ------
    ValueError
        If ``n_heads`` is not an integer from 2 to 4.

    See Also
    --------
    attnbook.multi_head_attention : the function drawn here (Chapter 6).
    Chapter 6, *Multi-head attention*, is the chapter it is drawn for.

    Notes
    -----
    Chapter 6, *Multi-head attention*: definition ``def-ch6-multi-head`` and equations
    ``eq-ch6-head``, ``eq-ch6-multihead`` and ``eq-ch6-stacked``.

    Suggested caption and alt text, for the ``mystnb`` metadata of the chapter's figure cell::

        caption: >-
          Multi-head attention with $h = 3$ heads. One product per input computes all heads'
          projections; column block $i$ (numbered) of $QW^Q$, $KW^K$, $VW^V$ is the input of
          head $i$. Each head attends on its own, the outputs $\\mathrm{head}_i$
          (vermillion) are concatenated and multiplied by $W^O$. Queries are blue, keys
          orange, values green.
        alt: >-
          Diagram. Three matrices Q (blue), K (orange), V (green) are each multiplied by one
          weight matrix W Q, W K, W V; each product is cut into three numbered column
          blocks. An arrow labelled split leads to three rows, one per head; row i holds
          block i of each product, an Attention box and its output head i. The three outputs
          are placed side by side (concat) and multiplied by W O, giving MultiHead of Q, K,
          V.

    Examples
    --------
    >>> fig = multi_head_attention(n_heads=2)
    >>> len([t for t in fig.axes[0].texts if t.get_text() == "Attention"])
    2
    """
    _validate_count("n_heads", n_heads, 2, 4)
    h, d_head, T = n_heads, 2, 3
    u = 0.1
    row_gap = 0.95
    height = 1.75 + (max(h, 3) - 1) * row_gap
    y_rows = [height - 0.9 - i * row_gap for i in range(h)]
    with rc_context(RC):
        cv = _Canvas(6.2, height, zoom=ZOOM)
        faces = {r: tint(style.COLORS[r], 0.3) for r in ROLES}
        y_in = [height - 0.9 - i * row_gap for i in range(3)]
        for (role, name, weight), y in zip(
                (("query", "Q", "Q"), ("key", "K", "K"), ("value", "V", "V")), y_in):
            # The input and its one projection, cut into h numbered column blocks.
            cv.text(0.15, y, f"${name}$")
            cv.cells(0.3, y + T * u / 2, T, h * d_head, u, faces[role], role=role)
            cv.arrow((0.3 + h * d_head * u + 0.06, y), (1.4 - 0.06, y), role=role)
            cv.text(1.1, y + 0.17, f"$W^{weight}$", size=SMALL)
            x_p = 1.4
            cv.cells(x_p, y + T * u / 2, T, h * d_head, u, faces[role], role=role)
            for i in range(1, h):
                cv.line([x_p + i * d_head * u] * 2, [y - T * u / 2, y + T * u / 2], lw=2.2)
            for i in range(h):
                cv.text(x_p + (i + 0.5) * d_head * u, y + T * u / 2 + 0.13, str(i + 1), size=SMALL)
            cv.text(x_p + h * d_head * u / 2, y - T * u / 2 - 0.2, f"${name}W^{weight}$",
                    size=SMALL)
        # Split: block i of every product is the input of head i.
        x_split = x_p + h * d_head * u + 0.1
        cv.arrow((x_split, (y_rows[0] + y_rows[-1]) / 2), (x_split + 0.4, (y_rows[0] + y_rows[-1]) / 2),
                 lw=2.0)
        cv.text(x_split + 0.2, (y_rows[0] + y_rows[-1]) / 2 + 0.2, "split", size=SMALL)
        x_heads = 2.55
        for i, y in enumerate(y_rows):
            for k, role in enumerate(("query", "key", "value")):
                x = x_heads + k * (d_head * u + 0.07)
                cv.cells(x, y + T * u / 2, T, d_head, u, faces[role], role=role)
                cv.text(x + d_head * u / 2, y + T * u / 2 + 0.13, str(i + 1), size=SMALL)
            x_att = x_heads + 3 * (d_head * u + 0.07) + 0.1
            cv.arrow((x_att - 0.12, y), (x_att, y))
            # Wider than its word, which would otherwise fill the box edge to edge.
            cv.box(x_att + 0.5, y, 1.0, 0.42, "Attention", size=SMALL)
            cv.arrow((x_att + 1.0, y), (x_att + 1.13, y), role="context")
            x_out = x_att + 1.16
            cv.cells(x_out, y + T * u / 2, T, d_head, u, faces["context"], role="context")
            cv.text(x_out + d_head * u / 2 - 0.04, y + T * u / 2 + 0.16, rf"$\mathrm{{head}}_{i + 1}$",
                    size=SMALL)
        cv.text(x_out + d_head * u / 2, y_rows[0] + T * u / 2 + 0.56, r"$T_q \times d_{\mathrm{head}}$",
                size=SMALL)
        # Concatenate along the features, then W^O. The heads meet on a vertical bus that
        # runs between the heads and concat, so no line crosses a head's label.
        # The bus stands right of the heads' labels (wider than their blocks), not through them.
        x_cat = x_out + 0.56
        y_cat = y_rows[0]
        x_bus = x_cat - 0.12
        for y in y_rows:
            cv.line([x_out + d_head * u + 0.04, x_bus], [y, y], role="context")
        cv.line([x_bus, x_bus], [y_rows[-1], y_rows[0]], role="context")
        cv.arrow((x_bus, y_cat), (x_cat - 0.04, y_cat), role="context")
        cv.cells(x_cat, y_cat + T * u / 2, T, h * d_head, u, faces["context"], role="context")
        for i in range(1, h):
            cv.line([x_cat + i * d_head * u] * 2, [y_cat - T * u / 2, y_cat + T * u / 2], lw=2.2)
        cv.text(x_cat + h * d_head * u / 2 + 0.1, y_cat + T * u / 2 + 0.34, r"$\mathrm{concat}$",
                size=SMALL)
        y_out = y_rows[-1]
        cv.arrow((x_cat + h * d_head * u / 2, y_cat - T * u / 2 - 0.04),
                 (x_cat + h * d_head * u / 2, y_out + T * u / 2 + 0.04), role="context")
        cv.text(x_cat + h * d_head * u / 2 + 0.08, (y_cat + y_out) / 2, "$W^O$", ha="left")
        cv.cells(x_cat, y_out + T * u / 2, T, h * d_head, u, faces["context"], role="context")
        cv.text(6.15, y_out - T * u / 2 - 0.2, r"$\mathrm{MultiHead}(Q, K, V)$", size=SMALL,
                ha="right")
        cv.text(6.15, y_out - T * u / 2 - 0.48, r"$T_q \times d_{\mathrm{model}}$", size=SMALL,
                ha="right")
    return cv.fig


def _mask_icon(cv: _Canvas, x: float, y: float, kind: str, n: int = 4, cell: float = 0.08):
    """A tiny n x n mask, upper-left corner at (x, y): causal or source padding."""
    keep = np.tril(np.ones((n, n), dtype=bool)) if kind == "causal" else np.ones((n, n), bool)
    if kind == "padding":
        keep[:, -1] = False
    cv.cells(x, y, n, n, cell, np.where(keep, PAPER, MASKED), lw=0.5)


def _sublayer(cv: _Canvas, x: float, y: float, label: str, kind: str, norm: str,
              width: float = 1.6, ln_width: float = 1.0, mask: str | None = None) -> dict:
    """One sublayer wrapped in its residual connection and layer normalisation.

    The stream enters at (x, y) from below; returns where it leaves and where the sublayer's
    box sits. ``kind`` is "self" (queries, keys, values from the stream), "cross" (queries
    from the stream; keys and values are drawn by the caller) or "ffn". An attention box
    names its ``mask`` on a second line, beside a small drawing of it.
    """
    left = x - width / 2 - 0.13
    y_in = y + 0.12
    cv.line([x, x], [y, y_in])
    if norm == "pre":
        cv.arrow((x, y_in), (x, y_in + 0.14))
        cv.box(x, y_in + 0.29, ln_width, 0.3, r"$\mathrm{LayerNorm}$", size=SMALL)
        y_in += 0.44
    half = 0.33 if mask else 0.18  # half the box's height
    y_box = y_in + 0.2 + half
    if kind == "ffn":
        cv.arrow((x, y_in), (x, y_box - half))
    else:
        roles = (("query", -0.34), ("key", 0.0), ("value", 0.34)) if kind == "self" else (
            ("query", 0.0),)
        for role, dx in roles:
            cv.line([x, x + dx], [y_in, y_in])
            cv.arrow((x + dx, y_in), (x + dx, y_box - half), role=role, lw=1.6)
    cv.box(x, y_box, width, 2 * half, None)
    if mask:
        cv.text(x, y_box + 0.15, label, size=SMALL)
        cv.text(x - 0.7, y_box - 0.14, f"{mask} mask", size=SMALL, ha="left")
        _mask_icon(cv, x + 0.44, y_box + 0.02, mask)
    else:
        cv.text(x, y_box, label, size=SMALL)
    y_add = y_box + half + 0.25
    cv.line([x, left, left], [y + 0.12, y + 0.12, y_add])  # the residual path
    cv.arrow((left, y_add), (x - 0.1, y_add))
    cv.arrow((x, y_box + half), (x, y_add - 0.1))
    cv.node(x, y_add, "+", r=0.1)
    y_out = y_add + 0.1
    if norm == "post":
        cv.arrow((x, y_out), (x, y_out + 0.12))
        cv.box(x, y_out + 0.27, ln_width, 0.3, r"$\mathrm{LayerNorm}$", size=SMALL)
        y_out += 0.42
    return {"out": y_out, "box": y_box, "left": left, "in": y + 0.12, "half": half}


def transformer_blocks(norm: str = "post") -> Figure:
    """The Transformer's encoder and decoder blocks, with post-LN beside pre-LN (Chapter 8).

    Above: one encoder block (self-attention under the source padding mask, feed-forward) and
    beside it one decoder block (self-attention under the causal mask, cross-attention whose keys and
    values come from the encoder's output ``H``, feed-forward), each sublayer wrapped in a
    residual connection and a layer normalisation placed as ``norm`` says; each block is
    repeated ``N`` times. Below: one sublayer in both placements, post-LN
    ``LayerNorm(x + Sublayer(x))`` beside pre-LN ``x + Sublayer(LayerNorm(x))``. The diagram
    is narrow so that its text stays readable on a phone, where a figure spans the screen.

    Parameters
    ----------
    norm : {"post", "pre"}, default "post"
        The placement drawn in the blocks: "post", as in the paper and the chapter's
        translator, or "pre" (with the extra LayerNorm after the last block of each stack).

    Returns
    -------
    matplotlib.figure.Figure
        A 4.45 x 8.9 inch diagram (9.4 inches tall for pre-LN).

    Raises
    ------
    ValueError
        If ``norm`` is neither "post" nor "pre".

    See Also
    --------
    multi_head_attention : the attention inside every block (Chapter 6).
    Chapter 8, *The Transformer*, is the chapter it is drawn for.

    Notes
    -----
    Chapter 8, *The Transformer*: algorithm ``alg-ch8-transformer``, equation ``eq-ch8-ffn``
    and the sections *Three attentions, three masks* and *Post-LN or pre-LN?*. In code,
    ``EncoderBlock`` and ``DecoderBlock``.

    Suggested caption and alt text, for the ``mystnb`` metadata of the chapter's figure cell::

        caption: >-
          The encoder block (left) and decoder block (right) of the Transformer, post-LN as
          in the paper, each repeated $N$ times; the arrows into each attention carry its
          queries (blue), keys (orange) and values (green), and the small grids are the
          masks (grey: masked). Below: one sublayer with its residual connection, post-LN
          beside pre-LN; pre-LN leaves the residual path untouched and adds one LayerNorm
          after the last block.
        alt: >-
          Diagram. The encoder block: the source embeddings plus positions enter MultiHead
          of H, H, H under a padding mask, then an addition with the residual path,
          LayerNorm, FFN, addition, LayerNorm; the block repeats N times and its output H
          goes to the decoder. The decoder block: target embeddings plus positions,
          MultiHead of Y, Y, Y under a causal mask, add and LayerNorm, MultiHead of Y, H, H
          whose keys and values come from H under the padding mask, add and LayerNorm, FFN,
          add and LayerNorm, then a softmax over the vocabulary. Below them, post-LN
          applies LayerNorm after the addition; pre-LN applies it to the sublayer's input,
          off the residual path.

    Examples
    --------
    >>> fig = transformer_blocks(norm="pre")
    >>> sum(t.get_text() == r"$\\mathrm{LayerNorm}$" for t in fig.axes[0].texts)
    9
    """
    if norm not in ("post", "pre"):
        raise ValueError(f'norm must be "post" (the paper) or "pre", got {norm!r}')
    # Narrow, so that on a 390 px phone (figures span the screen) its 11 pt text shows at
    # 13 px: the two blocks side by side, the two placements of LayerNorm below them.
    x_enc, x_dec = 1.05, 3.3
    with rc_context(RC):
        cv = _Canvas(4.45, 10.0)  # cut to the drawing's height at the end
        # Below: one sublayer in each placement, post-LN beside pre-LN.
        for x, placement, title in ((1.35, "post", "post-LN (the paper)"),
                                    (3.35, "pre", "pre-LN")):
            cv.text(x, 0.25, r"$\mathbf{x}$")
            s = _sublayer(cv, x, 0.45, "Sublayer", "ffn", placement, width=1.0)
            cv.arrow((x, s["out"]), (x, s["out"] + 0.18))
            cv.text(x, s["out"] + 0.38, title)
            cv.text(s["left"] - 0.08, (s["in"] + s["out"]) / 2 - 0.1, "residual", size=SMALL,
                    rotation=90, ha="right")
        y_rule = 0.45 + 2.25
        cv.line([0.15, 4.3], [y_rule, y_rule], lw=0.8)
        # Inputs: embeddings scaled by sqrt(d_model), plus the positional encodings.
        y0 = y_rule + 0.6
        for x, table, ids in ((x_enc, "src", "x"), (x_dec, "tgt", "y")):
            cv.text(x, y0 - 0.33, rf"$\sqrt{{d_{{\mathrm{{model}}}}}}\,E_{{\mathrm{{{table}}}}}[{ids}] + P$",
                    size=SMALL)
            cv.arrow((x, y0 - 0.17), (x, y0))
        # Encoder block: self-attention under the source padding mask, then the FFN.
        a = _sublayer(cv, x_enc, y0, r"$\mathrm{MultiHead}(H,H,H)$", "self", norm, mask="padding")
        b = _sublayer(cv, x_enc, a["out"], r"$\mathrm{FFN}(H)$", "ffn", norm)
        # Decoder block: causal self-attention, cross-attention, FFN.
        c = _sublayer(cv, x_dec, y0, r"$\mathrm{MultiHead}(Y,Y,Y)$", "self", norm, mask="causal")
        d = _sublayer(cv, x_dec, c["out"], r"$\mathrm{MultiHead}(Y,H,H)$", "cross", norm,
                      mask="padding")
        e = _sublayer(cv, x_dec, d["out"], r"$\mathrm{FFN}(Y)$", "ffn", norm)
        tops = {x_enc: b["out"], x_dec: e["out"]}
        for x, top in tops.items():
            cv.ax.add_patch(FancyBboxPatch((x - 0.96, y0 + 0.02), 1.93, top - y0 - 0.02,
                                           boxstyle="round,pad=0.03", fill=False, edgecolor=LINE,
                                           linewidth=0.9, linestyle=(0, (4, 3))))
            cv.text(x + 0.92, top - 0.2, r"$N\times$", size=SMALL, ha="right")
        y_enc, y_dec = tops[x_enc], tops[x_dec]
        if norm == "pre":  # one more normalisation after the last block of each stack
            for x, y in ((x_enc, y_enc), (x_dec, y_dec)):
                cv.arrow((x, y), (x, y + 0.12))
                cv.box(x, y + 0.27, 1.0, 0.3, r"$\mathrm{LayerNorm}$", size=SMALL)
            y_enc, y_dec = y_enc + 0.42, y_dec + 0.42
        # The encoder's output H: keys and values of the cross-attention, entering from the left.
        x_h = 2.17
        cv.line([x_enc, x_enc, x_h, x_h], [y_enc, y_enc + 0.25, y_enc + 0.25, d["box"] + 0.1])
        cv.text(x_enc + 0.1, y_enc + 0.42, "$H$", size=SMALL, ha="left")
        for dy, role in ((0.1, "key"), (-0.1, "value")):
            cv.line([x_h, x_h], [d["box"] + 0.1, d["box"] + dy])
            cv.arrow((x_h, d["box"] + dy), (x_dec - 0.8, d["box"] + dy), role=role, lw=1.6)
        cv.arrow((x_dec, y_dec), (x_dec, y_dec + 0.22))
        cv.text(x_dec, y_dec + 0.4,
                r"$\mathrm{softmax}(Y W^{\mathrm{out}} + \mathbf{b}^{\mathrm{out}})$", size=SMALL)
        cv.fit_height(y_dec + 0.62)
    return cv.fig


def flash_tiling(n_blocks: int = 3, step: tuple[int, int] = (2, 2)) -> Figure:
    """FlashAttention's tiling in the loop order of Chapter 9's algorithm: queries outer, keys inner.

    Above: the ``T_q x T_k`` scores, never formed whole, cut into ``B_r x B_c`` tiles and
    visited row by row (the numbers give the order); the blocks in fast memory at the drawn
    step are strong, those in slow memory pale. Below: for every step, which blocks of
    ``Q``, ``K``, ``V`` and the output ``O`` are in fast memory: ``Q_i`` for a whole row of
    tiles, ``K_j`` and ``V_j`` for one tile, and the accumulator ``Õ`` with ``m`` and ``ell``
    of ``O_i`` until the row ends and ``O_i = diag(ell)^-1 Õ`` is written.

    Parameters
    ----------
    n_blocks : int, default 3
        Number of query blocks and of key blocks, 2 or 3.
    step : tuple of int, default (2, 2)
        The tile ``(i, j)`` (from 1) whose step the left panel shows.

    Returns
    -------
    matplotlib.figure.Figure
        A 3.8 x 7.05 inch diagram (narrow, so that its text stays readable on a phone).

    Raises
    ------
    ValueError
        If ``n_blocks`` is not 2 or 3, or ``step`` is not a tile.

    See Also
    --------
    attnbook.flash_attention : the loop drawn here (Chapter 9).
    Chapter 9, *The cost of attention*, is the chapter it is drawn for.

    Notes
    -----
    Chapter 9, *The cost of attention*: algorithm ``alg-ch9-flash`` (tiled attention with an
    online softmax; FlashAttention-2's loop order, queries outer).

    Suggested caption and alt text, for the ``mystnb`` metadata of the chapter's figure cell::

        caption: >-
          FlashAttention's tiles, queries in the outer loop ({prf:ref}`alg-ch9-flash`).
          Top: the scores are computed one $B_r \\times B_c$ tile at a time, in the numbered
          order; at step 5 fast memory holds $Q_2$ (blue), $K_2$ (orange), $V_2$ (green), the
          tile $S$ and the running $m$, $\\ell$ and $\\tilde{O}$ of $O_2$ (vermillion), drawn strong;
          every other block stays in slow memory, drawn pale. Bottom: the blocks held in fast
          memory at every step; $O_i$ is written once, at the end of its row (w).
        alt: >-
          Diagram. Top: a 3 by 3 grid of score tiles numbered 1 to 9 row by row, with blue
          query blocks Q 1 to Q 3 on its left, orange key blocks K 1 to K 3 transposed
          above, green value blocks V 1 to V 3 below and vermillion output blocks O 1 to O 3
          on its right. Tile 5, row 2 and column 2, is highlighted with Q 2, K 2, V 2 and O
          2. Bottom: a chart with a row per block and a column per step 1 to 9: Q i is held
          for the three steps of row i, K j and V j at one step in every row, and O i
          through row i, written at its last step.

    Examples
    --------
    >>> fig = flash_tiling(n_blocks=2, step=(1, 2))
    >>> sorted(t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("$Q_"))
    ['$Q_1$', '$Q_1$', '$Q_2$', '$Q_2$']
    """
    _validate_count("n_blocks", n_blocks, 2, 3)
    n = n_blocks
    if (not isinstance(step, tuple) or len(step) != 2
            or not all(isinstance(v, (int, np.integer)) and 1 <= v <= n for v in step)):
        raise ValueError(f"step must be a tile (i, j) with 1 <= i, j <= n_blocks = {n}, "
                         f"got {step!r}")
    si, sj = step
    current = (si - 1) * n + sj  # steps are numbered from 1, row by row
    strong, pale = 0.75, 0.12
    t, d = 1.5 / n, 0.28  # a tile's side; the drawn width of d_k and d_v
    # Narrow, so that on a 390 px phone (figures span the screen) its 11 pt text shows at
    # 16 px: the tiles above, the chart of every step below them.
    with rc_context(RC):
        cv = _Canvas(3.8, 7.05)
        x0, y0 = 1.25, 2.72 + 3.55  # upper-left corner of the scores
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                k = (i - 1) * n + j
                x, y = x0 + (j - 1) * t, y0 - i * t
                done, now = k < current, k == current
                cv.ax.add_patch(Rectangle((x, y), t, t, facecolor=NEUTRAL if done else PAPER,
                                          edgecolor=INK if now else LINE,
                    linewidth=2.0 if now else 0.8, linestyle="-" if done or now else (0, (3, 2)),
                    zorder=2 if not now else 3))
                cv.text(x + t / 2, y + t / 2, rf"$S$ ({k})" if now else str(k), size=SMALL,
                        zorder=4)
        for i in range(1, n + 1):
            held = i == si
            y = y0 - i * t
            cv.ax.add_patch(Rectangle((x0 - d - 0.06, y), d, t, gid="role:query", linewidth=1.8 if held else 0.8,
                                      facecolor=tint(style.COLORS["query"], strong if held else pale),
                                      edgecolor=style.COLORS["query"], zorder=2))
            cv.text(x0 - d - 0.12, y + t / 2, rf"$Q_{i}$", ha="right")
            written, acc = i < si, i == si
            face = tint(style.COLORS["context"], strong if acc else pale if written else 0.0)
            cv.ax.add_patch(Rectangle((x0 + n * t + 0.06, y), d, t, gid="role:context",
                                      linewidth=1.8 if acc else 0.8, facecolor=face,
                                      edgecolor=style.COLORS["context"], zorder=2,
                                      linestyle="-" if written or acc else (0, (3, 2))))
            cv.text(x0 + n * t + d + 0.12, y + t / 2, rf"$O_{i}$", ha="left")
        for j in range(1, n + 1):
            held = j == sj
            x = x0 + (j - 1) * t
            for role, y, name, label_y in (("key", y0 + 0.06, rf"$K_{j}^\top$", y0 + d + 0.2),
                                           ("value", y0 - n * t - 0.06 - d, rf"$V_{j}$",
                                            y0 - n * t - d - 0.26)):
                cv.ax.add_patch(Rectangle((x, y), t, d, gid=f"role:{role}",
                                          linewidth=1.8 if held else 0.8,
                                          facecolor=tint(style.COLORS[role], strong if held else pale),
                                          edgecolor=style.COLORS[role], zorder=2))
                cv.text(x + t / 2, label_y, name, size=SMALL)
        cv.text(x0 + n * t / 2, 3.55 + 0.42, r"a tile: $B_r \times B_c$ scores", size=SMALL)
        cv.text(x0 + n * t / 2, 3.55 + 0.13, f"fast memory at step {current}: $Q_{si}$, $K_{sj}$, "
                rf"$V_{sj}$, $S$, $m$, $\ell$, $\tilde{{O}}$", size=SMALL)
        # Below: which blocks are in fast memory at every step.
        names = ([("query", rf"$Q_{i}$") for i in range(1, n + 1)]
                 + [("key", rf"$K_{j}$") for j in range(1, n + 1)]
                 + [("value", rf"$V_{j}$") for j in range(1, n + 1)]
                 + [("context", rf"$O_{i}$") for i in range(1, n + 1)])
        c = 0.22
        xc, yc = 1.05, 3.0
        cv.text(xc + n * n * c / 2, yc + 0.3, "step")
        for k in range(1, n * n + 1):
            cv.text(xc + (k - 0.5) * c, yc + 0.1, str(k), size=SMALL)
        for r, (role, name) in enumerate(names):
            y = yc - (r + 1) * c
            cv.text(xc - 0.08, y + c / 2, name, size=SMALL, ha="right")
            block = int(name[-2])
            for k in range(1, n * n + 1):
                i, j = (k - 1) // n + 1, (k - 1) % n + 1
                held = {"query": i, "key": j, "value": j, "context": i}[role] == block
                cv.ax.add_patch(Rectangle((xc + (k - 1) * c, y), c, c, linewidth=0.5,
                                          facecolor=tint(style.COLORS[role], strong) if held else PAPER,
                                          edgecolor=LINE if not held else style.COLORS[role],
                                          gid=f"role:{role}" if held else None, zorder=2))
                if role == "context" and held and j == n:
                    cv.text(xc + (k - 0.5) * c, y + c / 2, "w", size=SMALL, zorder=4)
        cv.ax.add_patch(Rectangle((xc + (current - 1) * c, yc - len(names) * c), c, len(names) * c,
                                  fill=False, edgecolor=INK, linewidth=2.0, zorder=5))
        cv.text(xc + n * n * c / 2, yc - len(names) * c - 0.2, "w: $O_i$ written to slow memory",
                size=SMALL)
    return cv.fig
