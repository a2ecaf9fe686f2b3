"""The special token ids live in attnbook.tokens; the data layer re-exports them, models import them."""

import ast
from pathlib import Path

import numpy as np
import pytest

import attnbook
from attnbook import tokens
from attnbook.batching import make_batch
from attnbook.masks import padding_mask
from attnbook.tasks import vocab


def test_ids_and_names():
    assert (tokens.PAD, tokens.BOS, tokens.EOS, tokens.SEP) == (0, 1, 2, 3)
    assert tokens.SPECIALS == ("<pad>", "<bos>", "<eos>", "<sep>")
    v = vocab.Vocab.from_words(["cat"])
    assert v.decode([tokens.BOS, 4, tokens.EOS, 4]) == ["cat"]
    assert v.tokens[: len(tokens.SPECIALS)] == tokens.SPECIALS
    assert v.encode(["cat"]).tolist() == [len(tokens.SPECIALS)]


def test_the_data_layer_re_exports_the_same_objects():
    for name in tokens.__all__:
        assert getattr(vocab, name) is getattr(tokens, name)
        assert getattr(attnbook.tasks, name) is getattr(tokens, name)


MODELS_AND_DECODING = ["nn", "gru", "seq2seq", "transformer", "decoding", "losses", "batching"]


@pytest.mark.parametrize("name", MODELS_AND_DECODING)
def test_models_and_decoding_do_not_import_the_tasks(name):
    path = Path(attnbook.__file__).parent / f"{name}.py"
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            module = ("." * n.level) + (n.module or "")
            assert "tasks" not in module, f"{name}.py imports {module}; import attnbook.tokens"
        elif isinstance(n, ast.Import):
            assert not any("tasks" in a.name for a in n.names), f"{name}.py imports the tasks"


def test_batch_masks_are_padding_masks():
    batch = make_batch([[5, 6, 7], [5]], [[8], [8, 9, 10]])
    np.testing.assert_array_equal(batch.src_mask, padding_mask([3, 1], 3))
    np.testing.assert_array_equal(batch.tgt_mask, padding_mask([2, 4], 4)[:, 0])  # words + EOS


def test_an_empty_source_is_rejected_because_nothing_could_be_attended():
    with pytest.raises(ValueError, match="at least one real token"):
        make_batch([[5, 6], []], [[8], [9]])
