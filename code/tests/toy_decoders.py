"""Toy decoders for the decoding tests: next-word probabilities set by a table, by hand.

A model here follows the protocol ``greedy_decode`` and ``beam_search`` drive (``start``,
``step``, ``select``), so a test can work out by hand what either search must return.
"""

from dataclasses import dataclass

import numpy as np

EOS = 2  # the end-of-sequence id of the book's vocabularies (1 is BOS)


@dataclass(frozen=True)
class LastWordState:
    prev: np.ndarray  # (batch,) the word each row read last
    attention: None = None


class LastWord:
    """Next-word probabilities that depend on the previous word only.

    ``table[prev]`` maps each next word to its probability; a word a row does not list gets
    a log-probability of -1e9, and a previous word the table does not list is followed by EOS.
    """

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 6):
        self.table, self.vocab = table, vocab

    def logits(self, prev):
        out = np.full((len(prev), self.vocab), -1e9)  # (batch, vocab)
        for row, p in enumerate(prev):
            for y, prob in self.table.get(int(p), {EOS: 1.0}).items():
                out[row, y] = np.log(prob)
        return out

    def start(self, src, src_mask=None, bos=1, use_cache=True):
        prev = np.full(len(src), bos)
        return self.logits(prev), LastWordState(prev)

    def step(self, state, y):
        return self.logits(y), LastWordState(np.asarray(y))

    def select(self, state, index):
        return LastWordState(state.prev[index])
