"""The training loop and the per-build model cache."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from attnbook import train as train_module
from attnbook.losses import cross_entropy
from attnbook.nn import Linear
from attnbook.optim import SGD, Adam, constant, warmup_linear
from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
from attnbook.train import History, cache_key, cached, fit
from attnbook.transformer import CausalLM, TransformerConfig


def regression(rng, n=64):
    x = rng.standard_normal((n, 3))
    return x, x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_fit_converges_and_records_everything(rng):
    model = Linear(3, 1, rng=rng)
    calls = []

    def evaluate(m):
        calls.append(len(calls))
        return {"w0": m.W.data[0, 0]}

    history = fit(model, [regression(rng)], mse, SGD(model.parameters(), lr=0.1), steps=300,
                  schedule=warmup_linear(0.1, 10, 300, final=0.01), clip=100.0, eval_fn=evaluate, eval_every=100)
    assert history.losses[-1] < 1e-8 < history.losses[0]
    assert len(history.losses) == len(history.lrs) == len(history.grad_norms) == 300
    assert history.lrs[4] == pytest.approx(0.05) and history.lrs[-1] == pytest.approx(0.01)
    assert history.eval_steps == [100, 200, 300] and len(calls) == 3
    assert history.metrics["w0"][-1] == pytest.approx(1.0, abs=1e-4)
    assert history.seconds > 0


def test_fit_cycles_a_list_but_not_a_generator(rng):
    model = Linear(3, 1, rng=rng)
    data = [regression(rng, 8) for _ in range(3)]
    assert len(fit(model, data, mse, SGD(model.parameters(), lr=0.01), steps=10).losses) == 10
    with pytest.raises(ValueError, match="the batches ran out after 3 of 10 updates"):
        fit(model, (b for b in data), mse, SGD(model.parameters(), lr=0.01), steps=10)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_fit_stops_on_divergence(rng):
    model = Linear(3, 1, rng=rng)
    x, y = regression(rng)
    with pytest.raises(ValueError, match="training diverged"):
        fit(model, [(x * 1e3, y)], mse, SGD(model.parameters(), lr=10.0), steps=50)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        fit(model, [(x, y)], mse, SGD(model.parameters(), lr=0.1), steps=0)


def test_history_json_round_trip():
    h = History(losses=[2.0, 1.0], lrs=[0.1, 0.1], eval_steps=[2], metrics={"acc": [0.5]}, seconds=1.5)
    assert History.from_json(h.to_json()) == h


@dataclass(frozen=True)
class Run:
    attention: str = "additive"
    seed: int = 0
    steps: int = 5
    schedule: object = constant(1e-2)


def copy_batches(rng, n=6, T=4):
    return [(src, np.concatenate([np.ones((8, 1), int), src], 1), np.concatenate([src, np.full((8, 1), 2)], 1))
            for src in (rng.integers(4, 10, (8, T)) for _ in range(n))]


def make_trainer(counter):
    def build_and_train(run):
        counter.append(run)
        rng = np.random.default_rng(run.seed)
        model = Seq2Seq(Seq2SeqConfig(10, 10, attention=run.attention, d_emb=4, d_enc=4, d_dec=4, d_attn=4), rng=rng)
        loss = lambda m, b: cross_entropy(m(b[0], b[1]), b[2])  # noqa: E731
        history = fit(model, copy_batches(rng), loss, Adam(model.parameters(), lr=1e-2), run.steps,
                      schedule=run.schedule)
        return model, history
    return build_and_train


def test_cached_trains_once_and_returns_the_identical_model(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_CACHE_DIR", str(tmp_path))
    trained = []
    fn = make_trainer(trained)
    model, history = cached(Run(), fn)
    again, history2 = cached(Run(), fn)
    assert len(trained) == 1
    assert type(again) is Seq2Seq and again.config == model.config
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert history2 == History(**json.loads(history.to_json()))
    src = np.array([[4, 5, 6]])
    np.testing.assert_array_equal(model(src, np.array([[1]])).data, again(src, np.array([[1]])).data)
    assert not list(tmp_path.glob(".tmp-*")), "temporary files must be renamed or removed"


def test_cached_retrains_when_anything_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_CACHE_DIR", str(tmp_path))
    trained = []
    fn = make_trainer(trained)
    cached(Run(), fn)
    cached(Run(seed=1), fn)
    cached(Run(schedule=constant(2e-2)), fn)
    assert len(trained) == 3
    monkeypatch.setattr(train_module, "_sources_digest", lambda: "edited package")
    cached(Run(), fn)
    assert len(trained) == 4
    monkeypatch.setattr(train_module, "blas_threads", lambda: 64)
    cached(Run(), fn)
    assert len(trained) == 5
    cached(Run(), fn)
    assert len(trained) == 5


def test_cache_key_covers_numpy_and_sources(monkeypatch):
    key = cache_key(Run())
    monkeypatch.setattr(np, "__version__", "0.0.0")
    assert cache_key(Run()) != key


def test_cached_rebuilds_transformers_from_their_config(tmp_path):
    @dataclass(frozen=True)
    class LMRun:
        positions: str = "alibi"

    def build(run):
        model = CausalLM(TransformerConfig(12, d_model=8, n_heads=2, d_ff=8, positions=run.positions),
                         rng=np.random.default_rng(3))
        return model, History()

    model, _ = cached(LMRun(), build, directory=tmp_path)
    again, _ = cached(LMRun(), build, directory=tmp_path)
    assert again.config == model.config and again is not model
    ids = np.array([[4, 5, 6, 7]])
    np.testing.assert_array_equal(model(ids).data, again(ids).data)


def test_cached_errors(tmp_path):
    @dataclass
    class Mutable:
        seed: int = 0

    with pytest.raises(ValueError, match="frozen dataclass"):
        cached(Mutable(), lambda c: None, directory=tmp_path)
    with pytest.raises(ValueError, match="must return \\(model, History\\)"):
        cached(Run(), lambda c: (None, [1.0]), directory=tmp_path)
    with pytest.raises(ValueError, match="has no .config"):
        cached(Run(), lambda c: (Linear(2, 2, rng=np.random.default_rng(0)), History()), directory=tmp_path)

    @dataclass(frozen=True)
    class WithArray:
        data: object = None

    with pytest.raises(ValueError, match="cannot be hashed reliably"):
        cache_key(WithArray(np.zeros(3)))


# ------------------------------------------------------------- docstring examples

TRAINING_MODULES = ["nn", "gru", "seq2seq", "transformer", "losses", "optim", "decoding", "train"]


@pytest.mark.parametrize("name", TRAINING_MODULES)
def test_docstring_examples(name):
    import doctest
    import importlib

    module = importlib.import_module(f"attnbook.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} example(s) failed in {name}"


@pytest.mark.parametrize("name", TRAINING_MODULES)
def test_public_names_have_examples_and_a_chapter(name):
    import importlib

    module = importlib.import_module(f"attnbook.{name}")
    for public in module.__all__:
        obj = getattr(module, public)
        if not callable(obj) or getattr(obj, "__module__", "") != module.__name__:
            continue
        doc = obj.__doc__ or ""
        assert ">>>" in doc, f"{name}.{public} has no doctested example"
        assert "See Also" in doc, f"{name}.{public} has no See Also section"


def _module_with(source):
    """Execute ``source`` as a module of its own, as a notebook's cells are."""
    import types as _types

    module = _types.ModuleType("notebook_like")
    exec(compile(source, "<cell>", "exec"), module.__dict__)
    return module


KEY_SOURCE = '''
from dataclasses import dataclass

WIDTH = {width}

@dataclass(frozen=True)
class Run:
    seed: int = 0

class Model:
    scale = {scale}
    def forward(self, x):
        return helper(x) * self.scale

def helper(x):
    return x + {offset}

def train(run):
    return Model(), WIDTH
'''


def test_cache_key_follows_what_the_training_function_uses():
    from attnbook.train import cache_key

    def key(**changes):
        values = dict(width=8, scale=2, offset=1) | changes
        module = _module_with(KEY_SOURCE.format(**values))
        return cache_key(module.Run(), module.train)

    base = key()
    assert key() == base, "the same code in a new module must give the same key"
    assert key(width=16) != base, "a constant the function reads"
    assert key(scale=3) != base, "a class attribute of a class the function uses"
    assert key(offset=2) != base, "a function called by a method of that class"


def test_translation_run_names_its_changes():
    from attnbook.recipes import translation_run

    run = translation_run("additive", 64, seed=3, max_len=10)
    assert (run.model.attention, run.model.d_enc, run.seed, run.max_len) == ("additive", 64, 3, 10)
    with pytest.raises(ValueError, match="no field"):
        translation_run("additive", 64, seed=0, max_length=10)
    with pytest.raises(ValueError, match="positive integer"):
        translation_run("additive", 0, seed=0)
