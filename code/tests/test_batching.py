"""Tests of attnbook.batching: equal-length buckets, padding, seq2seq batches and their masks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.batching import Batch, bucket_batches, make_batch, pad
from attnbook.tasks import BOS, EOS, PAD, make_dataset

seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=80), batch_size=st.integers(1, 9), seed=seeds)
def test_bucket_batches_cover_every_index_once_with_equal_lengths(lengths, batch_size, seed):
    lengths = np.array(lengths)
    batches = bucket_batches(lengths, batch_size, np.random.default_rng(seed))
    everything = np.concatenate(batches)
    assert sorted(everything.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert all(len(set(lengths[b].tolist())) == 1 for b in batches)
    for length in set(lengths.tolist()):  # only the last batch of a length may be short
        sizes = [len(b) for b in batches if lengths[b[0]] == length]
        assert sum(s < batch_size for s in sizes) <= 1
        assert len(sizes) == -(-np.sum(lengths == length) // batch_size)


def test_bucket_batches_shuffle_order_and_are_reproducible():
    lengths = np.repeat(np.arange(2, 12), 40)
    first = [b.tolist() for b in bucket_batches(lengths, 8, np.random.default_rng(0))]
    again = [b.tolist() for b in bucket_batches(lengths, 8, np.random.default_rng(0))]
    other = [b.tolist() for b in bucket_batches(lengths, 8, np.random.default_rng(1))]
    assert first == again and first != other
    batch_lengths = [lengths[b[0]] for b in first]
    assert batch_lengths != sorted(batch_lengths)  # lengths are mixed across steps
    assert any(b != sorted(b) for b in first)  # and examples shuffled within a length


@pytest.mark.parametrize(
    "args",
    [([[1, 2]], 2, np.random.default_rng(0)), ([1.0, 2.0], 2, np.random.default_rng(0)),
     ([1, 2], 0, np.random.default_rng(0)), ([1, 2], 2, 0)],
)
def test_bucket_batches_reject_bad_input(args):
    with pytest.raises(ValueError):
        bucket_batches(*args)


def test_pad_worked_example_and_fill_value():
    ids, lengths = pad([np.array([5, 6, 7]), [8], []], pad_id=-1)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, -1, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(lengths, [3, 1, 0])
    assert ids.dtype == lengths.dtype == np.int64


@pytest.mark.parametrize("seqs", [[], np.array([[1, 2]]), [[1, 2], [[3]]], [[1.5, 2.0]], "abc"])
def test_pad_rejects_bad_input(seqs):
    with pytest.raises(ValueError):
        pad(seqs)


sequences = st.lists(st.integers(4, 30), min_size=0, max_size=7)


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(sequences.filter(len), sequences), min_size=1, max_size=6))
def test_make_batch_shifts_and_masks(pairs):
    src = [np.array(x, dtype=np.int64) for x, _ in pairs]
    tgt = [np.array(y, dtype=np.int64) for _, y in pairs]
    batch = make_batch(src, tgt)
    B = len(pairs)
    T_src, T_dec = max(map(len, src)), max(map(len, tgt)) + 1
    assert batch.src.shape == (B, T_src) and batch.src_mask.shape == (B, 1, T_src)
    assert batch.tgt_in.shape == batch.tgt_out.shape == batch.tgt_mask.shape == (B, T_dec)
    assert batch.src_mask.dtype == batch.tgt_mask.dtype == bool
    for b, (x, y) in enumerate(zip(src, tgt)):
        n = len(y)
        np.testing.assert_array_equal(batch.src[b, : len(x)], x)
        assert batch.src_mask[b, 0].tolist() == [t < len(x) for t in range(T_src)]
        np.testing.assert_array_equal(batch.tgt_in[b, : n + 1], np.concatenate([[BOS], y]))
        np.testing.assert_array_equal(batch.tgt_out[b, : n + 1], np.concatenate([y, [EOS]]))
        # teacher forcing: the input at step i + 1 is the target of step i
        np.testing.assert_array_equal(batch.tgt_in[b, 1 : n + 1], batch.tgt_out[b, :n])
        assert batch.tgt_mask[b].tolist() == [i <= n for i in range(T_dec)]
        assert np.all(batch.tgt_in[b, n + 1 :] == PAD) and np.all(batch.tgt_out[b, n + 1 :] == PAD)
    np.testing.assert_array_equal(batch.src_lengths, [len(x) for x in src])
    np.testing.assert_array_equal(batch.tgt_lengths, [len(y) + 1 for y in tgt])
    np.testing.assert_array_equal(batch.tgt_mask.sum(axis=1), batch.tgt_lengths)


def test_bucketed_translation_batches_have_no_source_padding():
    # The trap this module exists for: a backward GRU must never read padding.
    rng = np.random.default_rng(0)
    data = make_dataset(rng, 300, 2, 12)
    batches = bucket_batches([len(s) for s in data.src], 16, rng)
    assert len(batches) >= 300 // 16
    for idx in batches:
        batch = make_batch([data.src[i] for i in idx], [data.tgt[i] for i in idx])
        assert isinstance(batch, Batch)
        assert batch.src_mask.all() and np.all(batch.src != PAD)
    mixed = make_batch(data.src[:16], data.tgt[:16])
    assert not mixed.src_mask.all()  # without bucketing, short sources would be padded


def test_make_batch_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        make_batch([[5, 6]], [[5], [6]])
    with pytest.raises(ValueError):
        make_batch(np.array([[5, 6]]), np.array([[5, 6]]))
    with pytest.raises(ValueError):
        make_batch([], [])
