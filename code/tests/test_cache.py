"""The per-build model cache: keys that cover what decides a model, refusal of what they
cannot cover, and one training when two processes ask for the same model at once."""

import json
import os
import subprocess
import sys
import shutil
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from attnbook import _fingerprint, cache as cache_module
from attnbook.cache import cache_key, cached
from attnbook.losses import cross_entropy
from attnbook.nn import Linear
from attnbook.optim import Adam, constant
from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
from attnbook.train import History, fit
from attnbook.transformer import CausalLM, TransformerConfig


@dataclass(frozen=True)
class Run:
    attention: str = "additive"
    seed: int = 0
    steps: int = 5
    schedule: object = constant(1e-2)


def copy_batches(rng, n=6, T=4):
    return [(src, np.concatenate([np.ones((8, 1), int), src], 1), np.concatenate([src, np.full((8, 1), 2)], 1))
            for src in (rng.integers(4, 10, (8, T)) for _ in range(n))]


def make_trainer():
    def build_and_train(run):
        rng = np.random.default_rng(run.seed)
        model = Seq2Seq(Seq2SeqConfig(10, 10, attention=run.attention, d_emb=4, d_enc=4, d_dec=4, d_attn=4), rng=rng)
        loss = lambda m, b: cross_entropy(m(b[0], b[1]), b[2])  # noqa: E731
        history = fit(model, copy_batches(rng), loss, Adam(model.parameters(), lr=1e-2), run.steps,
                      schedule=run.schedule)
        return model, history
    return build_and_train


@pytest.fixture
def trained(monkeypatch):
    """The configurations trained (not loaded) so far: a spy on the cache's writes.

    (A list in the training function's closure would not do: the cache hashes closures by
    content, so the key would change as the list grows.)"""
    runs = []
    write = cache_module._write_atomic

    def spy(path, fn):
        if path.suffix == ".npz":
            runs.append(path.name)
        return write(path, fn)

    monkeypatch.setattr(cache_module, "_write_atomic", spy)
    return runs


# ------------------------------------------------------------------ storing and loading


def test_cached_trains_once_and_returns_the_identical_model(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("ATTNBOOK_CACHE_DIR", str(tmp_path))
    fn = make_trainer()
    model, history = cached(Run(), fn)
    again, history2 = cached(Run(), fn)
    assert len(trained) == 1
    assert type(again) is Seq2Seq and again.config == model.config
    pairs = list(zip(model.named_parameters(), again.named_parameters(), strict=True))
    assert pairs
    for (name, a), (_, b) in pairs:
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert history2 == History(**json.loads(history.to_json()))
    src = np.array([[4, 5, 6]])
    np.testing.assert_array_equal(model(src, np.array([[1]])).data, again(src, np.array([[1]])).data)
    assert not list(tmp_path.glob(".tmp-*")), "temporary files must be renamed or removed"


def test_cached_retrains_when_anything_changes(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("ATTNBOOK_CACHE_DIR", str(tmp_path))
    fn = make_trainer()
    cached(Run(), fn)
    cached(Run(seed=1), fn)
    cached(Run(schedule=constant(2e-2)), fn)
    assert len(trained) == 3
    monkeypatch.setattr(cache_module, "sources_digest", lambda: "edited package")
    cached(Run(), fn)
    assert len(trained) == 4
    monkeypatch.setattr(cache_module, "blas_threads", lambda: 64)
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


# ------------------------------------------------------------------ what the key covers


def _module_with(source, name="notebook_like"):
    """Execute ``source`` as a module of its own, as a notebook's cells are."""
    module = types.ModuleType(name)
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), module.__dict__)
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
    def key(**changes):
        values = dict(width=8, scale=2, offset=1) | changes
        module = _module_with(KEY_SOURCE.format(**values))
        return cache_key(module.Run(), module.train)

    base = key()
    assert key() == base, "the same code in a new module must give the same key"
    assert key(width=16) != base, "a constant the function reads"
    assert key(scale=3) != base, "a class attribute of a class the function uses"
    assert key(offset=2) != base, "a function called by a method of that class"


@dataclass(frozen=True)
class Seed:
    seed: int = 0


def closure_over(value):
    def train(run):
        return value * run.seed
    return train


def test_two_closures_over_different_values_get_different_keys():
    assert cache_key(Seed(), closure_over(1.0)) == cache_key(Seed(), closure_over(1.0))
    assert cache_key(Seed(), closure_over(1.0)) != cache_key(Seed(), closure_over(2.0))
    assert cache_key(Seed(), closure_over((1, 2))) != cache_key(Seed(), closure_over((1, 3)))
    assert (cache_key(Seed(), closure_over(np.zeros(3)))
            != cache_key(Seed(), closure_over(np.array([0.0, 0.0, 1.0]))))


def test_default_arguments_are_part_of_the_key():
    def with_default(width):
        def train(run, width=width):
            return width
        return train

    assert cache_key(Seed(), with_default(8)) != cache_key(Seed(), with_default(16))


def test_a_global_array_is_hashed_by_content():
    module = _module_with("""
        import numpy as np
        DATA = np.arange(6.0).reshape(2, 3)

        def train(run):
            return DATA.sum() + run.seed
    """)
    key = cache_key(Seed(), module.train)
    module.DATA[1, 2] = 100.0  # edited in place: same object, new contents
    assert cache_key(Seed(), module.train) != key
    module.DATA = np.arange(6.0).reshape(2, 3)
    assert cache_key(Seed(), module.train) == key
    module.DATA = np.arange(6.0).reshape(3, 2)  # same bytes, other shape
    assert cache_key(Seed(), module.train) != key
    module.DATA = np.arange(6).reshape(2, 3)  # same values, other dtype
    assert cache_key(Seed(), module.train) != key


def test_functions_of_other_modules_of_the_book_are_followed(monkeypatch):
    # The recipe's helper lives in a module of its own, neither attnbook nor a library.
    helpers = _module_with("def steps(run):\n    return 10 * run.seed\n", "book_helpers")
    recipe = _module_with("def train(run):\n    return steps(run)\n", "book_recipe")
    recipe.steps = helpers.steps
    key = cache_key(Seed(), recipe.train)
    edited = _module_with("def steps(run):\n    return 20 * run.seed\n", "book_helpers")
    recipe.steps = edited.steps
    assert cache_key(Seed(), recipe.train) != key


def test_the_configuration_class_code_is_part_of_the_key():
    def key(factor):
        module = _module_with(f"""
            from dataclasses import dataclass

            @dataclass(frozen=True)
            class Run:
                seed: int = 0

                @property
                def steps(self):
                    return {factor} * (self.seed + 1)

            def train(run):
                return run.steps
        """)
        return cache_key(module.Run(), module.train)

    assert key(100) == key(100)
    assert key(100) != key(200), "train reads run.steps: the property's code decides the model"


def test_attnbook_and_libraries_are_covered_by_digest_and_version(monkeypatch):
    module = _module_with("""
        import numpy as np
        from threadpoolctl import threadpool_info
        from attnbook.tasks import SRC_VOCAB
        from attnbook.seq2seq import Seq2Seq

        def train(run):
            return Seq2Seq, len(SRC_VOCAB), np.exp(run.seed), threadpool_info
    """)
    key = cache_key(Seed(), module.train)  # nothing refused
    monkeypatch.setattr(cache_module, "sources_digest", lambda: "edited attnbook")
    assert cache_key(Seed(), module.train) != key
    monkeypatch.undo()
    real = _fingerprint._library_version
    monkeypatch.setattr(_fingerprint, "_library_version",
                        lambda name: "threadpoolctl==99" if name.startswith("threadpoolctl") else real(name))
    assert cache_key(Seed(), module.train) != key


def test_recursion_terminates():
    module = _module_with("""
        def countdown(n):
            return 0 if n == 0 else countdown(n - 1)

        class Node:
            def clone(self):
                return Node()

        def train(run):
            return countdown(run.seed), Node().clone()
    """)
    assert cache_key(Seed(), module.train) == cache_key(Seed(), module.train)


# ------------------------------------------------------------------ what it refuses


class Opaque:
    """An instance of an arbitrary class: its state is invisible to the fingerprint."""

    def __init__(self, value):
        self.value = value


GENERATOR = np.random.default_rng(0)
OPAQUE = Opaque(3)


def reads_a_global_generator(run):
    return GENERATOR.integers(10) + run.seed


def reads_an_opaque_global(run):
    return OPAQUE.value + run.seed


def generator_as_default(run, rng=np.random.default_rng(0)):
    return rng.integers(10)


@pytest.mark.parametrize("fn, named", [
    (reads_a_global_generator, "global 'GENERATOR'"),
    (reads_an_opaque_global, "global 'OPAQUE'"),
    (closure_over(Opaque(1)), "closure variable 'value'"),
    (closure_over(GENERATOR.integers), "closure variable 'value' -> self"),
    (closure_over(np.zeros(3).sum), "a method bound to a ndarray"),
    (generator_as_default, "defaults"),
    (Opaque(2).__init__, "self"),
])
def test_what_cannot_be_fingerprinted_is_refused(fn, named):
    with pytest.raises(ValueError, match="cached cannot fingerprint") as error:
        cache_key(Seed(), fn)
    assert named in str(error.value)


def test_a_module_of_ones_own_is_refused_with_advice():
    own = _module_with("SCALE = 2\n", "my_helpers")
    recipe = _module_with("def train(run):\n    return my_helpers.SCALE\n", "recipe")
    recipe.my_helpers = own
    with pytest.raises(ValueError, match="from module import f"):
        cache_key(Seed(), recipe.train)


def test_refusal_happens_before_training(tmp_path):
    def train(run):
        if run.seed >= 0:
            raise AssertionError("trained although its key could not be computed")
        return GENERATOR

    with pytest.raises(ValueError, match="cached cannot fingerprint"):
        cached(Seed(), train, directory=tmp_path)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ two processes


KEY_SCRIPT = """
import sys
from attnbook.cache import cache_key
from book_recipes import rnn_translation_run, train_rnn_translation
print(cache_key(rnn_translation_run("additive", 64, seed=0), train_rnn_translation))
"""


def test_keys_agree_across_processes():
    # Chapters run in separate kernels: chapter 8 finds chapter 4's models only if the key
    # does not depend on the process (string hashing, set order, object identity).
    keys = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", KEY_SCRIPT], env=env, capture_output=True,
                             text=True, check=True)
        keys.add(out.stdout.strip())
    from book_recipes import rnn_translation_run, train_rnn_translation

    keys.add(cache_key(rnn_translation_run("additive", 64, seed=0), train_rnn_translation))
    assert len(keys) == 1


TRAINER = """
import os, sys, time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from attnbook.cache import cached
from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
from attnbook.train import History


@dataclass(frozen=True)
class Run:
    seed: int = 0


def train(run):
    with open(os.environ["TRAIN_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.0)  # a slow training: the other process asks meanwhile
    config = Seq2SeqConfig(6, 6, d_emb=2, d_enc=2, d_dec=2, d_attn=2)
    model = Seq2Seq(config, rng=np.random.default_rng(os.getpid()))  # differs between processes
    return model, History(losses=[float(os.getpid())])


Path(sys.argv[2]).touch()  # ready
while not Path(sys.argv[3]).exists():  # start together
    time.sleep(0.01)
model, history = cached(Run(), train, directory=sys.argv[1])
print(" ".join(map(str, model.out.W.data.ravel().tolist())), history.losses)
"""


def test_two_processes_asking_at_once_train_the_model_once(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    folder, log, go = tmp_path / "cache", tmp_path / "log", tmp_path / "go"
    env = dict(os.environ, TRAIN_LOG=str(log))
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), str(tmp_path / f"ready{i}"),
                               str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    try:
        for i in range(2):
            for _ in range(6000):  # 60 s for Python to start under load
                if (tmp_path / f"ready{i}").exists() or procs[i].poll() is not None:
                    break
                __import__("time").sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for (out, err), p in zip(outputs, procs):
        assert p.returncode == 0, err
    assert len(log.read_text().split()) == 1, "trained twice"
    assert outputs[0][0] == outputs[1][0], "the second process must load the first one's model"
    assert not list(folder.glob(".tmp-*"))


def test_the_lock_is_released_after_a_failed_training(tmp_path):
    import fcntl

    def fails(run):
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        cached(Run(), fails, directory=tmp_path)
    (lock,) = tmp_path.glob("*.lock")
    with open(lock) as handle:  # would block (here: raise) if the failed run still held it
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_drawing_modules_change_no_trained_result(tmp_path, monkeypatch):
    """Editing a diagram or the style keeps the sources digest; editing anything else changes it."""
    package = tmp_path / "attnbook"
    shutil.copytree(_fingerprint._PACKAGE, package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    monkeypatch.setattr(_fingerprint, "_PACKAGE", package)
    before = _fingerprint.sources_digest()
    for name in _fingerprint.DRAWING_ONLY:
        with open(package / name, "a") as f:
            f.write("\n# an edited figure\n")
    assert _fingerprint.sources_digest() == before
    for name in ("attention.py", "tasks/translation.py"):
        with open(package / name, "a") as f:
            f.write("\n# an edited computation\n")
        edited = _fingerprint.sources_digest()
        assert edited != before, f"editing {name} must change the digest"
        before = edited


def test_drawing_modules_are_forbidden_to_everything_that_trains():
    """The reason the digest may leave them out: .importlinter forbids the imports."""
    import configparser

    contracts = configparser.ConfigParser()
    contracts.read(Path(__file__).resolve().parents[2] / ".importlinter")
    for section in ("importlinter:contract:no-data-in-models", "importlinter:contract:data"):
        forbidden = contracts[section]["forbidden_modules"].split()
        for name in _fingerprint.DRAWING_ONLY:
            if name.endswith(".py"):
                assert f"attnbook.{name[:-3]}" in forbidden, (section, name)
