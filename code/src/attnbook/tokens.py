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

#: Padding, which fills short sequences; masks and losses skip it.
PAD = 0
#: Beginning of sequence, the first input of every decoder.
BOS = 1
#: End of sequence, the last target of every sequence.
EOS = 2
#: Separator between question and answer in decoder-only tasks.
SEP = 3
#: The written forms of the special tokens, in id order (``SPECIALS[BOS] == "<bos>"``).
SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>")
