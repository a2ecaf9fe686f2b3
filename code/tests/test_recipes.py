"""The book's training recipes (book_recipes): their constructors, their cache keys, and the
wall between them and attnbook."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import book_recipes
from attnbook.cache import cache_key
from book_recipes import (TransformerTranslationRun, rnn_translation_run, train_rnn_translation,
                          train_transformer_translation)

RECIPES = Path(book_recipes.__file__).resolve().parent
ATTNBOOK = RECIPES.parent / "attnbook"


def test_rnn_translation_run_names_its_changes():
    run = rnn_translation_run("additive", 64, seed=3, max_len=10)
    assert (run.model.attention, run.model.d_enc, run.model.d_dec, run.seed, run.max_len) == (
        "additive", 64, 64, 3, 10)
    assert rnn_translation_run("dot", 32, seed=0, d_dec=64).model.d_dec == 64
    with pytest.raises(ValueError, match="no field"):
        rnn_translation_run("additive", 64, seed=0, max_length=10)
    with pytest.raises(ValueError, match="no field"):
        rnn_translation_run("additive", 64, seed=0, model=None)
    with pytest.raises(ValueError, match="positive integer"):
        rnn_translation_run("additive", 0, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        rnn_translation_run("additive", 8, seed=0, d_dec=0)


def test_one_spelling_per_model():
    # Chapters 4 and 8 ask for the same models through the constructor: equal configurations.
    assert rnn_translation_run("additive", 64, 1) == rnn_translation_run("additive", 64, seed=1)
    assert hash(rnn_translation_run("none", 64, 0)) == hash(rnn_translation_run("none", 64, 0))


KEYS = """
import sys
sys.path.insert(0, sys.argv[1])  # this copy of book_recipes, not the installed one
import book_recipes
from attnbook.cache import cache_key
from book_recipes import (TransformerTranslationRun, rnn_translation_run, train_rnn_translation,
                          train_transformer_translation)
assert book_recipes.__file__.startswith(sys.argv[1])
print(cache_key(rnn_translation_run("additive", 64, seed=0), train_rnn_translation))
print(cache_key(rnn_translation_run("none", 64, seed=2), train_rnn_translation))
print(cache_key(TransformerTranslationRun(), train_transformer_translation))
"""


def keys_after_editing(tmp_path, name=None, old=None, new=None):
    """The cache keys of two recurrent models and the Transformer, in a fresh process, after
    an edit of a copy of book_recipes on disk (as an author would edit it)."""
    folder = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
    shutil.copytree(RECIPES, folder / "book_recipes", ignore=shutil.ignore_patterns("__pycache__"))
    if name is not None:
        path = folder / "book_recipes" / f"{name}.py"
        source = path.read_text(encoding="utf-8")
        assert source.count(old) == 1, f"the edit {old!r} must match once"
        path.write_text(source.replace(old, new), encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", KEYS, str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_editing_one_recipe_retrains_only_its_models(tmp_path):
    additive, none, transformer = keys_after_editing(tmp_path)
    assert additive == cache_key(rnn_translation_run("additive", 64, seed=0), train_rnn_translation)
    assert transformer == cache_key(TransformerTranslationRun(), train_transformer_translation)

    edited = keys_after_editing(tmp_path, "rnn_translation", "max_len=2 * L + 10", "max_len=2 * L + 11")
    assert edited[0] != additive and edited[1] != none and edited[2] == transformer

    edited = keys_after_editing(tmp_path, "transformer_translation", "betas=(0.9, 0.98)", "betas=(0.9, 0.99)")
    assert edited == [additive, none, edited[2]] and edited[2] != transformer

    # A default of the configuration is part of the key as well.
    edited = keys_after_editing(tmp_path, "transformer_translation", "warmup: int = 100", "warmup: int = 50")
    assert edited == [additive, none, edited[2]] and edited[2] != transformer


def test_attnbook_never_imports_the_recipes():
    importing = re.compile(r"^\s*(from|import)\s+book_recipes\b", re.MULTILINE)
    offenders = [p.name for p in ATTNBOOK.rglob("*.py") if importing.search(p.read_text(encoding="utf-8"))]
    assert not offenders
    script = ("import pkgutil, importlib, sys, attnbook\n"
              "for m in pkgutil.walk_packages(attnbook.__path__, 'attnbook.'):\n"
              "    importlib.import_module(m.name)\n"
              "print(sorted(n for n in sys.modules if n.startswith('book_recipes')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_recipes_are_outside_the_hashed_package():
    # Editing a recipe must not change attnbook's source digest (which retrains every model).
    assert not RECIPES.is_relative_to(ATTNBOOK)
    assert ATTNBOOK.is_dir() and (RECIPES / "__init__.py").is_file()


def test_rnn_recipe_scores_only_the_lengths_asked_for():
    run = rnn_translation_run("additive", 8, seed=0, steps=2, n_train=64, test_lengths=())
    _, history = train_rnn_translation(run)
    assert history.metrics == {} and len(history.losses) == 2
    run = rnn_translation_run("none", 8, seed=0, steps=2, n_train=64, test_lengths=(4, 6), n_test=5)
    _, history = train_rnn_translation(run)
    assert sorted(history.metrics) == sorted(f"{m}_{L}" for m in ("token_accuracy", "exact_match", "bleu")
                                             for L in (4, 6))


TINY = dict(d_model=8, n_heads=2, d_ff=8, n_layers=1, steps=3, warmup=1, batch=4)


def test_transformer_recipe_builds_the_positions_and_dropout_asked_for():
    model, _ = train_transformer_translation(
        TransformerTranslationRun(**TINY, positions="alibi", dropout=0.2))
    assert (model.config.positions, model.config.dropout) == ("alibi", 0.2)
    dropouts = [m.p for m in model.modules() if type(m).__name__ == "Dropout"]
    assert dropouts and set(dropouts) == {0.2}
    plain, _ = train_transformer_translation(TransformerTranslationRun(**TINY))
    assert (plain.config.positions, plain.config.dropout) == ("sinusoidal", 0.0)


def test_transformer_recipe_trains_on_sentences_of_at_most_max_words(monkeypatch):
    import book_recipes.transformer_translation as recipe

    lengths = []
    real = recipe.make_dataset

    def spy(rng, n, low, high):
        lengths.append((low, high))
        return real(rng, n, low, high)

    monkeypatch.setattr(recipe, "make_dataset", spy)
    train_transformer_translation(TransformerTranslationRun(**{**TINY, "steps": 40}, max_words=4))
    assert len(lengths) == 40 and all(low == high for low, high in lengths)
    assert {low for low, _ in lengths} == {2, 3, 4}  # 40 draws from 2..4 reach every length


def test_transformer_recipe_default_keeps_the_books_translator():
    # The default draws lengths as before (2..20), so the chapters' translator is unchanged.
    run = TransformerTranslationRun()
    assert (run.max_words, run.positions, run.dropout) == (20, "sinusoidal", 0.0)
