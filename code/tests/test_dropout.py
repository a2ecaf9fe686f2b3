"""Dropout: the function, the layer, train/eval modes, and where the Transformer applies it."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import Tensor, causal_mask, gradcheck
from attnbook.decoding import beam_search, greedy_decode
from attnbook.dropout import dropout
from attnbook.nn import Dropout, FeedForward, Linear, Module, evaluating
from attnbook.optim import SGD
from attnbook.train import fit
from attnbook.transformer import (
    CausalLM,
    DecoderBlock,
    EncoderBlock,
    EncoderDecoderTransformer,
    TransformerConfig,
)

seeds = st.integers(0, 2**32 - 1)


def weighted(out, seed=1):
    w = np.random.default_rng(seed).standard_normal(out.shape)
    return (out * w).sum()


def state(rng):
    return rng.bit_generator.state


# ------------------------------------------------------------------ the function


@given(seeds, st.floats(0.0, 0.9))
def test_dropout_keeps_the_expectation(seed, p):
    """Over many draws every entry averages to itself, and a fraction 1 - p is kept."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(5)
    n = 20_000
    y = dropout(np.broadcast_to(x, (n, 5)), p, rng=rng)  # n independent draws of the mask
    kept = y != 0.0
    np.testing.assert_allclose(y[kept], np.broadcast_to(x, (n, 5))[kept] / (1 - p), rtol=1e-15)
    standard_error = np.abs(x) * np.sqrt(p / (1 - p) / n)
    # For p so small that n * p << 1 the normal bound fails: a single drop (p = 3.8e-8, seed
    # 138) moves the mean by |x| / n, 36 standard errors. Allow two such drops.
    rare = 2 * np.abs(x) / ((1 - p) * n)
    assert np.all(np.abs(y.mean(axis=0) - x) <= 6 * standard_error + rare + 1e-10 * np.abs(x))
    assert abs(kept.mean() - (1 - p)) <= 6 * np.sqrt(p * (1 - p) / kept.size) + 1e-12


@given(seeds, st.floats(0.05, 0.9))
def test_backward_uses_the_forward_mask(seed, p):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((3, 4, 5)), requires_grad=True)
    y = dropout(x, p, rng=rng)
    g = rng.standard_normal(x.shape)
    (y * g).sum().backward()
    kept = y.data != 0.0  # x has no zeros: an entry is zero exactly when it was dropped
    np.testing.assert_array_equal(x.grad, np.where(kept, g * (1 / (1 - p)), 0.0))
    np.testing.assert_array_equal(y.data, np.where(kept, x.data * (1 / (1 - p)), 0.0))


def test_dropout_gradcheck_with_a_fixed_rng(rng):
    x = Tensor(rng.standard_normal((4, 6)), requires_grad=True)
    # A generator seeded afresh on every call: the finite differences see the same mask.
    assert gradcheck(lambda x: weighted(dropout(x * x, 0.4, rng=np.random.default_rng(7))), x)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_identity_when_not_training_or_p_zero_and_no_random_numbers_drawn(rng, as_tensor):
    x = rng.standard_normal((3, 4))
    x = Tensor(x, requires_grad=True) if as_tensor else x
    before = state(rng)
    assert dropout(x, 0.5, rng=rng, training=False) is x
    assert dropout(x, 0.0, rng=rng) is x
    assert state(rng) == before
    dropout(x, 0.5, rng=rng)
    assert state(rng) != before


def test_dropout_keeps_float32_and_returns_tensors(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert dropout(x, 0.5, rng=rng).dtype == np.float32
    assert isinstance(dropout(Tensor(x), 0.5, rng=rng), Tensor)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), True, "0.1", None])
def test_p_must_be_in_zero_one(rng, p):
    with pytest.raises(ValueError, match=r"dropout probability p must be a number in \[0, 1\)"):
        dropout(np.ones(3), p, rng=rng)
    with pytest.raises(ValueError, match=r"dropout probability p must be a number in \[0, 1\)"):
        Dropout(p, rng=rng)


def test_rng_must_be_a_generator():
    with pytest.raises(ValueError, match="rng must be a numpy Generator"):
        dropout(np.ones(3), 0.5, rng=0)
    with pytest.raises(ValueError, match="rng must be a numpy Generator"):
        Dropout(0.5, rng=np.random.RandomState(0))


# -------------------------------------------------------------- the layer and modes


class Net(Module):
    def __init__(self, rng):
        self.lin = Linear(4, 4, rng=rng)
        self.blocks = [FeedForward(4, 8, rng=rng), Dropout(0.5, rng=rng)]
        self.drop = Dropout(0.5, rng=rng)

    def forward(self, x):
        return self.drop(self.blocks[1](self.blocks[0](self.lin(x))))


def test_train_and_eval_reach_every_submodule(rng):
    net = Net(rng)
    assert net.training and all(m.training for m in net.modules())
    assert len(net.modules()) == 7  # Net, lin, ffn, its two Linears, two Dropouts
    assert net.eval() is net and not any(m.training for m in net.modules())
    assert net.train() is net and all(m.training for m in net.modules())
    x = rng.standard_normal((3, 4))
    net.eval()
    np.testing.assert_array_equal(net(x).data, net(x).data)  # deterministic in evaluation
    np.testing.assert_array_equal(net(x).data, net.blocks[0](net.lin(x)).data)
    net.train()
    assert not np.array_equal(net(x).data, net(x).data)  # two different masks


def test_evaluating_restores_each_mode(rng):
    net = Net(rng)
    net.blocks[1].eval()  # a mixed state survives the block
    with evaluating(net) as model:
        assert model is net and not any(m.training for m in net.modules())
    assert net.training and net.drop.training and not net.blocks[1].training
    with pytest.raises(RuntimeError), evaluating(net):
        raise RuntimeError("restored even when the block fails")
    assert net.training and not net.blocks[1].training
    plain = object()
    with evaluating(plain) as model:  # objects without modes pass through
        assert model is plain


# ---------------------------------------------------------------- the Transformer


def cfg(**changes):
    base = dict(vocab=11, tgt_vocab=9, d_model=8, n_heads=2, d_ff=16, n_layers=2)
    return TransformerConfig(**{**base, **changes})


@pytest.mark.parametrize("positions", ["sinusoidal", "rope"])
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_p_zero_changes_nothing_and_draws_nothing(positions, norm):
    """At p = 0 (the default) training mode is bit for bit evaluation mode, and no rng is consumed."""
    ids = np.random.default_rng(1).integers(3, 11, size=(2, 5))
    tgt = np.random.default_rng(2).integers(3, 9, size=(2, 4))
    for Model, args in ((CausalLM, (ids,)), (EncoderDecoderTransformer, (ids, tgt))):
        rng, rng_p = np.random.default_rng(0), np.random.default_rng(0)
        model = Model(cfg(positions=positions, norm=norm), rng=rng)
        with_p = Model(cfg(positions=positions, norm=norm, dropout=0.3), rng=rng_p)
        assert state(rng) == state(rng_p)  # building draws the same numbers at every p
        for (n, a), (_, b) in zip(model.named_parameters(), with_p.named_parameters()):
            np.testing.assert_array_equal(a.data, b.data, err_msg=n)
        after_init = state(rng)
        trained = model(*args)
        assert state(rng) == after_init  # the forward pass drew nothing at p = 0
        np.testing.assert_array_equal(trained.data, model.eval()(*args).data)
        np.testing.assert_array_equal(trained.data, with_p.eval()(*args).data)  # p > 0, evaluation


def manual_encoder_block(block, x, mask, seed, p):
    """The paper's placement, by hand: dropout on each sublayer's output before the residual sum."""
    rng = np.random.default_rng(seed)

    def drop(y):
        return dropout(y, p, rng=rng)

    def attn(y):
        return block.attn(y, y, y, mask=mask)[0]

    if block.pre:
        x = x + drop(attn(block.norm1(x)))
        return x + drop(block.ffn(block.norm2(x)))
    x = block.norm1(x + drop(attn(x)))
    return block.norm2(x + drop(block.ffn(x)))


def manual_decoder_block(block, x, memory, seed, p):
    rng = np.random.default_rng(seed)

    def drop(y):
        return dropout(y, p, rng=rng)

    mask = causal_mask(x.shape[1])
    if block.pre:
        y = block.norm1(x)
        x = x + drop(block.self_attn(y, y, y, mask=mask)[0])
        y = block.norm2(x)
        x = x + drop(block.cross_attn(y, memory, memory)[0])
        return x + drop(block.ffn(block.norm3(x)))
    x = block.norm1(x + drop(block.self_attn(x, x, x, mask=mask)[0]))
    x = block.norm2(x + drop(block.cross_attn(x, memory, memory)[0]))
    return block.norm3(x + drop(block.ffn(x)))


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_blocks_drop_each_sublayer_output_before_the_residual_sum(rng, norm):
    x, memory = rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 3, 8))
    config = cfg(norm=norm, dropout=0.4)
    block = EncoderBlock(config, rng=np.random.default_rng(0))
    block.drop.rng = np.random.default_rng(5)
    got = block(x, mask=causal_mask(4))
    np.testing.assert_array_equal(got.data, manual_encoder_block(block, x, causal_mask(4), 5, 0.4).data)
    dec = DecoderBlock(config, rng=np.random.default_rng(0))
    dec.drop.rng = np.random.default_rng(6)
    got = dec(x, memory, self_mask=causal_mask(4))
    np.testing.assert_array_equal(got.data, manual_decoder_block(dec, x, memory, 6, 0.4).data)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rope"])
def test_embeddings_plus_positions_are_dropped(positions):
    lm = CausalLM(cfg(positions=positions, dropout=0.5), rng=np.random.default_rng(0))
    ids = np.array([[3, 4, 5, 6]])
    expected = lm.embed.eval().embed(ids).data
    lm.embed.train()
    lm.embed.drop.rng = np.random.default_rng(9)
    got = lm.embed.embed(ids).data
    keep = np.random.default_rng(9).random(expected.shape) >= 0.5  # the mask dropout draws
    np.testing.assert_array_equal(got, np.where(keep, expected * 2.0, 0.0))


def test_transformer_gradients_with_dropout():
    model = EncoderDecoderTransformer(cfg(d_model=4, d_ff=8, n_layers=1, dropout=0.3),
                                      rng=np.random.default_rng(0))
    src, tgt = np.array([[3, 4, 5]]), np.array([[1, 6, 7]])

    def f(*params):
        shared = np.random.default_rng(4)  # the same masks on every call
        for module in model.modules():
            if isinstance(module, Dropout):
                module.rng = shared
        return weighted(model(src, tgt))

    assert gradcheck(f, *model.parameters())


def test_decoding_and_evaluation_run_in_evaluation_mode():
    """Decoding a model left in training mode gives its evaluation-mode output, draws nothing,
    and leaves the model in training mode; fit evaluates in evaluation mode too."""
    rng = np.random.default_rng(0)
    lm = CausalLM(cfg(dropout=0.5), rng=rng)
    prompt = np.array([[3, 4, 5], [5, 4, 3]])
    lm.eval()
    reference = greedy_decode(lm, prompt, max_len=6)
    reference_beam = beam_search(lm, prompt, beam_size=2, max_len=6)
    lm.train()
    before = state(rng)
    got, got_beam = greedy_decode(lm, prompt, max_len=6), beam_search(lm, prompt, beam_size=2, max_len=6)
    assert state(rng) == before and lm.training and all(m.training for m in lm.modules())
    np.testing.assert_array_equal(got.log_probs, reference.log_probs)
    np.testing.assert_array_equal(got_beam.scores, reference_beam.scores)

    seen = []

    def eval_fn(model):
        seen.append([m.training for m in model.modules()])
        return {"loss": 0.0}

    def loss(model, batch):
        seen.append(model.training)
        return weighted(model(batch))

    fit(lm, [prompt], loss, SGD(lm.parameters(), lr=0.0), steps=2, eval_fn=eval_fn, eval_every=1)
    assert seen[0] is True and seen[2] is True  # training steps
    assert not any(seen[1]) and not any(seen[3])  # evaluations
    assert lm.training


def test_config_validates_dropout():
    for bad in (-0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match=r"dropout probability p must be a number in \[0, 1\)"):
            cfg(dropout=bad)
    assert cfg().dropout == 0.0
