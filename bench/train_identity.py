"""Bit-identity and CPU time of the book's training runs: this checkout against another one.

Trains each kind of model the book trains (the recipes of ``book_recipes`` and copies of the
chapters' own training functions, with the chapters' sizes and optimisers) for a given
number of steps, twice: once with this checkout's ``attnbook`` and once with the package
under ``--against`` (e.g. the main branch's ``code/src``), each in a fresh subprocess with
``PYTHONPATH`` set. It then checks that every parameter (``np.array_equal``) and every
logged number (loss, learning rate, gradient norm, evaluation metric) is exactly equal,
and reports the CPU time per training step of each side (best of ``--repeats`` runs,
the two sides alternating so that background load hits both alike).

Usage::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/train_identity.py \\
        --against /work/main/code/src [--steps 60] [--repeats 3] [--kinds rnn_additive,lm]

Exit status 1 if any model differs. Not a test: the times depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OWN_SRC = HERE.parent / "code" / "src"


# --------------------------------------------------------------------- the training runs
def _rnn(attention, d, steps, **changes):
    from book_recipes import rnn_translation_run, train_rnn_translation

    run = rnn_translation_run(attention, d, 0, steps=steps, **changes)
    return train_rnn_translation(run)


def _transformer(steps, **changes):
    from book_recipes import TransformerTranslationRun, train_transformer_translation

    run = TransformerTranslationRun(steps=steps, warmup=min(100, steps // 2), **changes)
    return train_transformer_translation(run)


def _lm(steps, positions):
    # Chapter 7's train_lm, with its LMRun's sizes.
    from attnbook import optim, train
    from attnbook.losses import cross_entropy
    from attnbook.tasks import grammar_corpus, lm_windows
    from attnbook.transformer import CausalLM, TransformerConfig

    rng_data, rng_init, rng_batch = np.random.default_rng(7).spawn(3)
    ids, vocab = grammar_corpus(rng_data, 100_000)
    cfg = TransformerConfig(vocab=len(vocab), d_model=32, n_heads=4, d_ff=128, n_layers=2,
                            positions=positions)
    model = CausalLM(cfg, rng=rng_init)
    batches = (lm_windows(ids, 16, rng=rng_batch, n=32) for _ in range(steps))
    history = train.fit(model, batches, lambda m, b: cross_entropy(m(b[0]), b[1]),
                        optim.AdamW(model.parameters(), lr=6e-3), steps,
                        schedule=optim.warmup_linear(6e-3, min(40, steps), steps), clip=1.0)
    return model, history


def _copy(steps, positions):
    # Chapter 7's train_copy, with its CopyRun's sizes.
    from attnbook import optim, train
    from attnbook.losses import cross_entropy
    from attnbook.tasks import decoder_only, sequence_task
    from attnbook.transformer import CausalLM, TransformerConfig

    rng_data, rng_init = np.random.default_rng(11).spawn(2)
    cfg = TransformerConfig(vocab=14, d_model=32, n_heads=4, d_ff=128, n_layers=2,
                            positions=positions)
    model = CausalLM(cfg, rng=rng_init)

    def batches():
        while True:
            n = int(rng_data.integers(1, 7))
            data = sequence_task("copy", rng_data, 16, n, n, n_symbols=10)
            yield decoder_only(data.src, data.tgt)

    history = train.fit(model, batches(), lambda m, b: cross_entropy(m(b[0]), b[1], mask=b[2]),
                        optim.AdamW(model.parameters(), lr=1e-2), steps,
                        schedule=optim.warmup_linear(1e-2, min(70, steps), steps), clip=1.0)
    return model, history


def _kv_heads(steps):
    # Chapter 9's train_kv_heads (grouped-query attention, pre-LN, one layer).
    from attnbook.batching import make_batch
    from attnbook.losses import cross_entropy
    from attnbook.optim import Adam, warmup_linear
    from attnbook.tasks import SRC_VOCAB, TGT_VOCAB, make_dataset
    from attnbook.train import fit
    from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig

    rng_init, rng_data = np.random.default_rng(3).spawn(2)
    config = TransformerConfig(vocab=len(SRC_VOCAB), tgt_vocab=len(TGT_VOCAB), d_model=32,
                               n_heads=4, n_kv_heads=2, d_ff=64, n_layers=1, norm="pre")
    model = EncoderDecoderTransformer(config, rng=rng_init)

    def batches():
        while True:
            length = int(rng_data.integers(2, 11))
            data = make_dataset(rng_data, 32, length, length)
            yield make_batch(data.src, data.tgt)

    def loss_fn(model, batch):
        logits = model(batch.src, batch.tgt_in, batch.src_mask)
        return cross_entropy(logits, batch.tgt_out, mask=batch.tgt_mask)

    adam = Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    return model, fit(model, batches(), loss_fn, adam, steps,
                      schedule=warmup_linear(3e-3, min(50, steps), steps), clip=1.0)


#: name -> (function of the number of steps, what the book trains this way)
KINDS = {
    "rnn_none": (lambda s: _rnn("none", 64, s, test_lengths=(4, 12), n_test=50),
                 "ch1/ch4: GRU seq2seq without attention (with greedy-decoding evaluation)"),
    "rnn_additive": (lambda s: _rnn("additive", 64, s, test_lengths=(4, 12), n_test=50),
                     "ch1/ch4/ch8: GRU seq2seq, additive attention (evaluation included)"),
    "rnn_general": (lambda s: _rnn("general", 32, s, n_train=3000, max_len=8, lr=3e-3,
                                   test_lengths=()),
                    "ch2: small GRU seq2seq with another score"),
    "transformer": (lambda s: _transformer(s), "ch6/ch8: the post-LN Transformer translator"),
    "transformer_rope_dropout": (lambda s: _transformer(s, positions="rope", dropout=0.1),
                                 "ch8: the translator with RoPE and dropout"),
    "lm_sinusoidal": (lambda s: _lm(s, "sinusoidal"), "ch7: causal language model"),
    "lm_alibi": (lambda s: _lm(s, "alibi"), "ch7: causal language model, ALiBi"),
    "copy_rope": (lambda s: _copy(s, "rope"), "ch7: copy task, RoPE"),
    "kv_heads": (lambda s: _kv_heads(s), "ch9: grouped-query translator"),
}


# ---------------------------------------------------------------- one side, in a subprocess
def _child(kind, steps, out):
    import attnbook
    import attnbook.train

    # Time fit itself (batching, steps, the recipe's evaluation) apart from the set-up
    # (data sets, initialisation); patched before the recipes import it.
    inner, fit_seconds = attnbook.train.fit, []

    def timed_fit(*args, **kwargs):
        t = time.process_time()
        history = inner(*args, **kwargs)
        fit_seconds.append(time.process_time() - t)
        return history

    attnbook.train.fit = timed_fit
    t0 = time.process_time()
    model, history = KINDS[kind][0](steps)
    seconds = time.process_time() - t0
    params = [np.array(p.data) for p in model.parameters()]
    record = {"params": params, "losses": history.losses, "lrs": history.lrs,
              "grad_norms": history.grad_norms, "eval_steps": history.eval_steps,
              "metrics": history.metrics, "cpu_seconds": seconds, "fit_seconds": sum(fit_seconds),
              "package": str(Path(attnbook.__file__).parent)}
    with open(out, "wb") as f:
        pickle.dump(record, f)


def _run_side(src, kind, steps):
    env = dict(os.environ, PYTHONPATH=str(src))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.pkl"
        subprocess.run([sys.executable, __file__, "--child", kind, "--steps", str(steps),
                        "--out", str(out)], env=env, check=True, cwd=tmp)
        with open(out, "rb") as f:
            return pickle.load(f)


def _differences(a, b):
    """Names of the quantities that are not exactly equal (empty: bit-identical)."""
    bad = []
    if len(a["params"]) != len(b["params"]):
        return ["number of parameters"]
    for i, (p, q) in enumerate(zip(a["params"], b["params"])):
        if p.shape != q.shape or p.tobytes() != q.tobytes():
            bad.append(f"parameter {i}")
    for name in ("losses", "lrs", "grad_norms", "eval_steps", "metrics"):
        if json.dumps(a[name]) != json.dumps(b[name]):
            bad.append(name)
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="the other checkout's code/src")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--child")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.steps, args.out)
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        raise SystemExit("set OPENBLAS_NUM_THREADS=1 (and OMP_NUM_THREADS=1): one BLAS thread")
    if args.against is None:
        raise SystemExit("--against PATH (the other checkout's code/src) is required")
    failed = False
    print(f"{'kind':26s} {'steps':>5s} {'this run':>9s} {'other run':>9s} {'ratio':>6s} "
          f"{'this step':>9s} {'other step':>10s} {'ratio':>6s}  identical")
    for kind in args.kinds.split(","):
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternate the sides
            theirs.append(_run_side(args.against, kind, args.steps))
            ours.append(_run_side(OWN_SRC, kind, args.steps))
        assert ours[0]["package"] != theirs[0]["package"], "both sides imported the same attnbook"
        bad = sorted({d for a in ours for b in theirs for d in _differences(a, b)})
        failed |= bool(bad)
        t_ours, t_theirs = (min(r["cpu_seconds"] for r in side) for side in (ours, theirs))
        f_ours, f_theirs = (min(r["fit_seconds"] for r in side) * 1e3 / args.steps for side in (ours, theirs))
        print(f"{kind:26s} {args.steps:5d} {t_ours:8.2f}s {t_theirs:8.2f}s {t_ours / t_theirs:6.3f} "
              f"{f_ours:7.2f}ms {f_theirs:8.2f}ms {f_ours / f_theirs:6.3f}  "
              + ("yes" if not bad else "NO: " + ", ".join(bad)), flush=True)
    print("run: CPU seconds of the whole training function (data sets and initialisation included); "
          "step: CPU time of fit per update (batching and the recipe's evaluation included); "
          f"best of {args.repeats}; ratio = this / other")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
