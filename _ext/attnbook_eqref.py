"""Sphinx extension: an equation reference in parentheses is not parenthesised twice.

``math_eqref_format: "({number})"`` prints a reference to equation 1.1 as "(1.1)", the book's
style ("the softmax (3.1) turns scores into ..."). Where the text itself puts the reference in
parentheses, "a product of one prediction per word ({eq}`eq-ch1-factor`)", the two pairs
stacked into "((1.1))". The parentheses of the text are dropped around a reference that already
has its own, in the HTML and in the PDF alike; any other text is untouched.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

NUMBERED = re.compile(r"^\(\s*[\d.]+\s*\)$")


def _is_equation_reference(node: nodes.Node) -> bool:
    if node.__class__.__name__ == "math_reference":  # the LaTeX builder's own node
        return True
    if not isinstance(node, nodes.reference):
        return False
    target = node.get("refuri", "") + "#" + node.get("refid", "")
    return "equation-" in target and bool(NUMBERED.match(node.astext()))


class SingleParentheses(SphinxPostTransform):
    # After the references are resolved (ReferencesResolver: 10) and the LaTeX builder's
    # MathReferenceTransform has made its math_reference nodes.
    default_priority = 900

    def run(self, **kwargs) -> None:
        for ref in list(self.document.findall(_is_equation_reference)):
            parent = ref.parent
            if parent is None:
                continue
            index = parent.index(ref)
            if index == 0 or index + 1 >= len(parent):
                continue
            before, after = parent[index - 1], parent[index + 1]
            if not (isinstance(before, nodes.Text) and isinstance(after, nodes.Text)):
                continue
            if before.astext().endswith("(") and after.astext().startswith(")"):
                parent.replace(before, nodes.Text(before.astext()[:-1]))
                parent.replace(after, nodes.Text(after.astext()[1:]))


def setup(app: Sphinx) -> dict:
    app.add_post_transform(SingleParentheses)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
