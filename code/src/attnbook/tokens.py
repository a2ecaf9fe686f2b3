"""The special token ids every vocabulary of the book shares.

Models and decoding need to know which id starts a sentence, which ends one and which is
padding, but nothing else about the data; this module is all they import for it.
``attnbook.tasks.vocab`` builds every vocabulary on top of these ids.

``PAD = 0`` fills short sequences, ``BOS = 1`` starts a decoder, ``EOS = 2`` ends a
sequence, ``SEP = 3`` separates question from answer in decoder-only tasks; ``SPECIALS``
holds their written forms, in id order (``SPECIALS[BOS] == "<bos>"``).
"""

from __future__ import annotations

__all__ = ["PAD", "BOS", "EOS", "SEP", "SPECIALS"]

PAD, BOS, EOS, SEP = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>")
