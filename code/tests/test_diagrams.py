"""The schematic diagrams: they render, keep the palette, say what their chapter says, read well.

Each diagram is checked for
- rendering to SVG and PDF without error, and leaving no pyplot figure open;
- colour: every coloured mark is a role colour of the palette (or a tint of one, for fills), a
  colour of the book's two colour maps, or grey, and a mark tagged with a role has that role's
  colour and no other;
- words: the labels the chapter's equations use, in the chapter's notation (the same TeX, after
  spelling the book's macros out), present in the figure and in the chapter's source;
- legibility: no text smaller than ``style.MIN_FONT_SIZE``, none outside the figure, and no two
  texts overlapping.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from attnbook import diagrams, style  # noqa: E402

BOOK = Path(__file__).resolve().parents[2] / "book"

# (function, keyword arguments, chapter source, symbols that must appear in the figure and in
# the chapter, in TeX as the chapter writes it).
CASES = {
    "encoder_decoder": (diagrams.encoder_decoder, {}, "01-bottleneck.md", [
        r"\vec{h}_t = f(\vec{h}_{t-1}, x_t)", r"\vec{s}_i = g(\vec{s}_{i-1}, y_{i-1}, \vec{c})",
        r"d_c", r"x_1", r"y_{T_y}", r"T_x"]),
    "bahdanau_step": (diagrams.bahdanau_step, {}, "04-learning-to-align.md", [
        r"\vec{s}_{i-1}", r"\vec{s}_{i-1} W_q", r"\vec{h}_j", r"\vec{h}_{T_x}", r"e_{ij}",
        r"\alpha_{ij}", r"\vec{c}_i", r"\vec{s}_i", r"E y_{i-1}", r"\mathrm{GRU}",
        r"\vec{k}_j = \vec{h}_j W_k"]),
    "scaled_dot_product_attention": (diagrams.scaled_dot_product_attention, {},
                                     "05-scaled-dot-product.md", [
        r"Q K^\top", r"\sqrt{d_k}", r"A = \softmax(S)", r"O = A V", r"\vec c_i", r"T_q \times d_k",
        r"T_q \times T_k", r"K^\top", r"-\infty"]),
    "multi_head_attention": (diagrams.multi_head_attention, {}, "06-multi-head.md", [
        r"Q W^Q", r"\mathrm{head}_1", r"\MultiHead(Q, K, V)", r"W^O", r"d_{\text{head}}",
        r"T_q \times d_{\text{head}}", r"\concat"]),
    "transformer_blocks": (diagrams.transformer_blocks, {}, "08-transformer.md", [
        r"\MultiHead(H, H, H)", r"\MultiHead(Y, Y, Y)", r"\MultiHead(Y, H, H)", r"\FFN(H)",
        r"\FFN(Y)", r"\LayerNorm", r"\sqrt{d_{\text{model}}}\, E_{\text{src}}[x] + P",
        r"\sqrt{d_{\text{model}}}\, E_{\text{tgt}}[y] + P",
        r"\softmax(Y W^{\text{out}} + \vec b^{\text{out}})", "post-LN", "pre-LN", "causal",
        "padding", "residual"]),
    "flash_tiling": (diagrams.flash_tiling, {}, "09-cost.md", [
        r"O_i", r"B_r \times B_c", r"\ell", r"\tilde{O}", "fast memory", "slow memory"]),
}

# The book's macros (_config.yml) as a diagram writes them with matplotlib's mathtext.
MACROS = {r"\mathrm{softmax}": r"\softmax", r"\mathrm{MultiHead}": r"\MultiHead",
          r"\mathrm{LayerNorm}": r"\LayerNorm", r"\mathrm{FFN}": r"\FFN",
          r"\mathrm{concat}": r"\concat", r"\mathbb{R}": r"\R", r"\mathbf": r"\vec",
          r"\text": r"\mathrm"}


def normalise(tex: str) -> str:
    """TeX reduced to what it shows: macros spelled the book's way; no spacing, braces or $."""
    for written, book in MACROS.items():
        tex = tex.replace(written, book)
    tex = re.sub(r"\\[,;!]|\\quad|\\qquad", "", tex)
    return re.sub(r"[\s{}$&]", "", tex)


def drawn(fig):
    """Lay the figure out on an Agg canvas (text extents need one); returns its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    function, kwargs, chapter, symbols = CASES[request.param]
    fig = function(**kwargs)
    return request.param, fig, chapter, symbols


def test_every_public_diagram_is_tested():
    public = {name for name in diagrams.__all__ if name not in ("ROLES", "SDPA_SIZES", "tint")}
    assert public == set(CASES)


def test_renders_to_svg_and_pdf_and_leaves_no_pyplot_figure(case):
    name, fig, _, _ = case
    before = plt.get_fignums()
    for fmt in ("svg", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt)
        assert buffer.tell() > 1000, f"{name}: empty {fmt}"
    assert plt.get_fignums() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_renders_twice_in_the_books_style_without_a_layout_warning(name):
    # The book's style turns constrained layout on; a diagram places its marks by hand and must
    # not fall back to it when savefig resets the layout engine after the first rendering, as a
    # notebook does when it renders a figure more than once (matplotlib then warns that there
    # are no gridspecs with layoutgrids).
    import warnings

    function, kwargs, _, _ = CASES[name]
    with matplotlib.rc_context():
        style.use()
        fig = function(**kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            for _ in range(2):
                fig.savefig(io.BytesIO(), format="svg", bbox_inches="tight")


def _colours(artist) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The (kind, RGBA) colours an artist paints with; fully transparent ones are skipped."""
    found = []
    if isinstance(artist, Patch):
        for kind, rgba in (("face", artist.get_facecolor()), ("edge", artist.get_edgecolor())):
            if kind == "edge" and artist.get_linewidth() == 0:
                continue
            found.append((kind, tuple(rgba)))
    elif isinstance(artist, Line2D):
        found.append(("line", tuple(matplotlib.colors.to_rgba(artist.get_color()))))
    elif isinstance(artist, Text):
        found.append(("text", tuple(matplotlib.colors.to_rgba(artist.get_color()))))
    return [(k, c) for k, c in found if c[3] > 0]


def _on_tint_line(rgb: np.ndarray, role: str) -> bool:
    """Whether ``rgb`` is the role's colour mixed with white (the role's fills; white: none)."""
    base = np.asarray(to_rgb(style.COLORS[role]))
    amount = np.dot(1 - rgb, 1 - base) / np.dot(1 - base, 1 - base)
    return 0 <= amount <= 1 + 1e-9 and np.allclose(amount * base + (1 - amount), rgb, atol=2 / 255)


def _in_colour_map(rgb: np.ndarray) -> bool:
    for name in (style.CMAP, style.DIVERGING_CMAP):
        table = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
        if np.min(np.abs(table - rgb).max(axis=1)) <= 2 / 255:
            return True
    return False


def test_only_palette_colours_and_each_role_in_its_own(case):
    name, fig, _, _ = case
    problems = []
    for artist in fig.findobj(lambda a: isinstance(a, (Patch, Line2D, Text))):
        gid = artist.get_gid() or ""
        for kind, rgba in _colours(artist):
            rgb = np.asarray(rgba[:3])
            if gid.startswith("role:"):
                role = gid.removeprefix("role:")
                exact = np.allclose(rgb, to_rgb(style.COLORS[role]), atol=1 / 255)
                ok = exact if kind in ("edge", "line") else _on_tint_line(rgb, role)
                if not ok:
                    problems.append(f"{artist!r} ({role}) paints its {kind} {matplotlib.colors.to_hex(rgb)}")
            elif not (np.ptp(rgb) < 1e-6 or _in_colour_map(rgb)
                      or any(_on_tint_line(rgb, r) for r in diagrams.ROLES)):
                problems.append(f"{artist!r}: {kind} {matplotlib.colors.to_hex(rgb)} is not in the palette")
    assert not problems, f"{name}:\n" + "\n".join(problems[:10])


def test_every_role_of_the_palette_is_the_roles_colour():
    for role in diagrams.ROLES:
        assert role in style.COLORS
    # One colour per role: query, key, value, context and no_attention never share one.
    assert len({style.COLORS[r].lower() for r in diagrams.ROLES}) == len(diagrams.ROLES)


def test_the_chapters_symbols_are_in_the_figure_and_in_the_chapter(case):
    name, fig, chapter, symbols = case
    shown = normalise(" ".join(t.get_text() for t in texts(fig)))
    source = normalise((BOOK / chapter).read_text(encoding="utf-8"))
    missing_in_figure = [s for s in symbols if normalise(s) not in shown]
    missing_in_chapter = [s for s in symbols if normalise(s) not in source]
    assert not missing_in_figure, f"{name}: the figure lacks {missing_in_figure}"
    assert not missing_in_chapter, (
        f"{name}: {chapter} no longer writes {missing_in_chapter}: update the diagram (and this "
        "list) to the chapter's notation")


def test_no_text_smaller_than_the_minimum(case):
    name, fig, _, _ = case
    small = [(t.get_text(), t.get_fontsize()) for t in texts(fig)
             if t.get_fontsize() < style.MIN_FONT_SIZE - 1e-9]
    assert not small, f"{name}: text below {style.MIN_FONT_SIZE} pt: {small}"


def test_no_text_leaves_the_figure_or_overlaps_another(case):
    name, fig, _, _ = case
    renderer = drawn(fig)
    frame = fig.bbox
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig)]
    outside = [s for s, b in boxes
               if b.x0 < frame.x0 - 0.5 or b.y0 < frame.y0 - 0.5
               or b.x1 > frame.x1 + 0.5 or b.y1 > frame.y1 + 0.5]
    assert not outside, f"{name}: text outside the figure: {outside}"
    overlapping = [(s, t) for i, (s, a) in enumerate(boxes) for t, b in boxes[i + 1:]
                   if a.overlaps(b) and _overlap_area(a, b) > 4.0]
    assert not overlapping, f"{name}: texts overlap: {overlapping}"


def test_every_label_fits_inside_its_box(case):
    """A text whose anchor lies in a box (a sublayer, a state, a key) stays inside it."""
    from matplotlib.patches import FancyBboxPatch

    name, fig, _, _ = case
    renderer = drawn(fig)
    boxes = [p.get_window_extent(renderer) for p in fig.findobj(FancyBboxPatch)
             if p.get_fill()]
    spilling = []
    for t in texts(fig):
        extent = t.get_window_extent(renderer)
        anchor = t.get_transform().transform(t.get_position())
        for box in boxes:
            if box.contains(*anchor) and not (
                    extent.x0 >= box.x0 - 0.5 and extent.x1 <= box.x1 + 0.5
                    and extent.y0 >= box.y0 - 0.5 and extent.y1 <= box.y1 + 0.5):
                spilling.append(t.get_text())
    assert not spilling, f"{name}: labels spill out of their boxes: {spilling}"


@pytest.mark.parametrize("function, label, role", [
    # Chapter 1's c is the fixed context of a model without attention: its grey, not the
    # vermillion of a context vector made by attention (the notation page's colours).
    (diagrams.encoder_decoder, r"$\mathbf{c}$", "no_attention"),
    (diagrams.bahdanau_step, r"$\mathbf{s}_{i-1}$", "query"),
    (diagrams.bahdanau_step, r"$\mathbf{k}_{j}$", "key"),
    (diagrams.bahdanau_step, r"$\mathbf{c}_i$", "context"),
])
def test_each_symbol_sits_in_a_box_of_its_role(function, label, role):
    from matplotlib.patches import FancyBboxPatch

    fig = function()
    renderer = drawn(fig)
    (text,) = [t for t in texts(fig) if t.get_text() == label]
    anchor = text.get_transform().transform(text.get_position())
    (box,) = [p for p in fig.findobj(FancyBboxPatch)
              if p.get_fill() and p.get_window_extent(renderer).contains(*anchor)]
    assert box.get_gid() == f"role:{role}"
    assert np.allclose(box.get_edgecolor()[:3], to_rgb(style.COLORS[role]))


def test_the_encoder_decoder_draws_every_input_of_chapter_1s_decoder():
    """s_i = g(s_{i-1}, y_{i-1}, c) and softmax([s_i; c; E y_{i-1}] W^out + b^out), each step.

    Every state box and every output (softmax) box of the decoder is the end of a grey arrow
    (the context c); every output box is also the end of two ink arrows (the state below it
    and a branch of the previous word), and every state box of one ink arrow from below (the
    previous word).
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = diagrams.encoder_decoder()
    renderer = drawn(fig)
    transform = fig.axes[0].transData

    def labelled(prefix):
        anchors = [t.get_transform().transform(t.get_position()) for t in texts(fig)
                   if t.get_text().startswith(prefix)]
        return [p.get_window_extent(renderer) for p in fig.findobj(FancyBboxPatch)
                if p.get_fill() and any(p.get_window_extent(renderer).contains(*a)
                                        for a in anchors)]

    ends = [(a.get_gid(), transform.transform(a._posA_posB[1]))
            for a in fig.findobj(FancyArrowPatch)]

    def arriving(box, gid):
        grown = box.padded(2.0)
        return sum(1 for g, end in ends if g == gid and grown.contains(*end))

    states, outputs = labelled(r"$\mathbf{s}_"), labelled("softmax")
    assert len(states) == len(outputs) >= 2
    for box in states:
        assert arriving(box, "role:no_attention") == 1, "c must enter every decoder state"
        assert arriving(box, None) >= 1, "the previous word must enter every state"
    for box in outputs:
        assert arriving(box, "role:no_attention") == 1, "c must enter every output layer"
        assert arriving(box, None) == 2, "s_i and E y_{i-1} must enter every output layer"


def _overlap_area(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


@pytest.mark.parametrize("call", [
    lambda: diagrams.scaled_dot_product_attention(mask="future"),
    lambda: diagrams.multi_head_attention(n_heads=1),
    lambda: diagrams.multi_head_attention(n_heads=2.0),
    lambda: diagrams.transformer_blocks(norm="sandwich"),
    lambda: diagrams.flash_tiling(n_blocks=4),
    lambda: diagrams.flash_tiling(step=(0, 1)),
    lambda: diagrams.flash_tiling(n_blocks=2, step=(3, 1)),
    lambda: diagrams.tint("#0072B2", 1.5),
])
def test_invalid_arguments_say_what_to_do(call):
    with pytest.raises(ValueError, match="must be|unknown"):
        call()


@pytest.mark.parametrize("kwargs", [{"mask": None}, {"mask": "causal"}])
def test_every_mask_variant_draws_within_the_rules(kwargs):
    fig = diagrams.scaled_dot_product_attention(**kwargs)
    assert all(t.get_fontsize() >= style.MIN_FONT_SIZE for t in texts(fig))


@pytest.mark.parametrize("mask", ["padding", "causal", None])
def test_the_flow_of_shapes_draws_the_sizes_it_declares(mask):
    # Chapter 5's caption states SDPA_SIZES and asserts them: the drawn matrices must match.
    T_q, T_k, d_k, d_v = diagrams.SDPA_SIZES[mask]
    fig = diagrams.scaled_dot_product_attention(mask=mask)
    cells = Counter(p.get_gid() for p in fig.axes[0].patches
                    if isinstance(p, Rectangle) and p.get_fill() and p.get_gid())
    # Each matrix of a role: its cells, plus one unfilled frame (not counted).
    assert cells == {"role:query": T_q * d_k, "role:key": d_k * T_k,
                     "role:value": T_k * d_v, "role:context": T_q * d_v}


@pytest.mark.parametrize("function, kwargs", [
    (diagrams.multi_head_attention, {"n_heads": 2}),
    (diagrams.multi_head_attention, {"n_heads": 4}),
    (diagrams.transformer_blocks, {"norm": "pre"}),
    (diagrams.flash_tiling, {"n_blocks": 2, "step": (2, 1)}),
])
def test_the_variants_keep_their_text_apart(function, kwargs):
    fig = function(**kwargs)
    renderer = drawn(fig)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig)]
    overlapping = [(s, t) for i, (s, a) in enumerate(boxes) for t, b in boxes[i + 1:]
                   if _overlap_area(a, b) > 4.0]
    assert not overlapping, overlapping
    inside = fig.bbox
    assert all(b.x0 >= inside.x0 - 0.5 and b.x1 <= inside.x1 + 0.5 and b.y0 >= inside.y0 - 0.5
               and b.y1 <= inside.y1 + 0.5 for _, b in boxes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_docstring_suggests_a_caption_and_an_alt_text(name):
    """The suggestion is the YAML a chapter's figure cell takes, ready to paste."""
    doc = getattr(diagrams, name).__doc__
    assert "figure cell::" in doc, f"{name}: no suggested caption and alt text"
    block = doc.split("figure cell::", 1)[1].split("    Examples", 1)[0]
    suggested = yaml.safe_load(textwrap.dedent(block))
    assert set(suggested) == {"caption", "alt"}
    assert len(suggested["caption"]) > 60 and len(suggested["alt"]) > 150
    assert suggested["alt"].startswith("Diagram")
    # The caption names the colours it uses, as the book's captions do.
    named = [c for c in ("blue", "orange", "green", "vermillion", "grey") if c in suggested["caption"]]
    assert named, f"{name}: the caption explains no colour"
