"""The training loop (the model cache is tested in test_cache.py)."""

import numpy as np
import pytest

from attnbook.nn import Linear
from attnbook.optim import SGD, warmup_linear
from attnbook.train import History, fit


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


# ------------------------------------------------------------- docstring examples

# Their examples run once, collected by --doctest-modules (test_doctests.py).
TRAINING_MODULES = ["init", "kvcache", "nn", "dropout", "gru", "seq2seq", "transformer", "losses",
                    "optim", "decoding", "train", "cache", "runtime"]


def own_public_callables(module):
    """(name, object) for each name in ``module.__all__`` that is callable and defined there."""
    return [(public, obj) for public in module.__all__
            if callable(obj := getattr(module, public))
            and getattr(obj, "__module__", "") == module.__name__]


@pytest.mark.parametrize("name", TRAINING_MODULES)
def test_public_names_have_examples(name):
    import importlib

    module = importlib.import_module(f"attnbook.{name}")
    defined = own_public_callables(module)
    for public, obj in defined:
        assert ">>>" in (obj.__doc__ or ""), f"{name}.{public} has no doctested example"
        # Its See Also and the chapter it names: tests/test_api.py (which reads book/).
    assert defined, f"attnbook.{name} defines none of its public names"


# attnbook's public names: tests/test_api.py checks that the chapter each names exists and uses it.
@pytest.mark.parametrize("module_name", ["book_recipes.rnn_translation",
                                         "book_recipes.transformer_translation"])
def test_public_names_name_the_chapter_that_teaches_them(module_name):
    import importlib
    import re

    module = importlib.import_module(module_name)
    defined = own_public_callables(module)
    for public, obj in defined:
        doc = obj.__doc__ or ""
        assert ">>>" in doc, f"{module_name}.{public} has no doctested example"
        see_also = doc.partition("See Also")[2]
        assert re.search(r"Chapter \d, \*[^*]+\*", see_also), f"{module_name}.{public} names no chapter"
    assert defined, f"{module_name} defines none of its public names"
