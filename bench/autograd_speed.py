"""attnbook's autograd against PyTorch eager, as a reader gets it: a fresh Python, no variables.

Forward and backward of multi-head attention on Tensors, (B, T, d) = (16, 32, 64), 4 heads,
causal mask, float64, one BLAS thread (one torch thread). Four ways of computing it:

* attnbook ``multi_head_attention`` (the package function: fused softmax node);
* attnbook written out (the same math as Tensor operations: ``@``, ``where``, ``.softmax``);
* PyTorch fused (``F.scaled_dot_product_attention``);
* PyTorch written out (``@``, ``masked_fill``, ``.softmax``).

The ratio is the best of attnbook's two over the best of PyTorch's two (issue 12: at most
1.0 for a reader's fresh Python).

Every timing runs in its own child process, started with an EMPTY environment plus at most
the variables of its column, and importing only what it times (the PyTorch children never
import attnbook): the allocator's state depends on everything a process did before, so two
frameworks timed in one process would change each other's speed. The columns:

* ``fresh``: nothing set; ``import attnbook`` sets glibc's malloc thresholds itself
  (``attnbook/_malloc.py``);
* ``opt-out``: ``ATTNBOOK_NO_MALLOPT=1``, i.e. glibc's defaults (PyTorch: same as fresh);
* ``build-env``: the variables the book's build sets (``MALLOC_MMAP_THRESHOLD_``,
  ``MALLOC_TRIM_THRESHOLD_``), for reference.

The BLAS thread count is set to one inside each child through OpenBLAS's own API, not
through the environment. Children run round by round (every variant and column once per
round, in turn), so load from other processes on a shared machine hits each alike; each
cell is the best of its rounds' best-of-``--repeats`` times.

Usage::

    .venv/bin/python bench/autograd_speed.py                 # torch if installed
    .venv/bin/python bench/autograd_speed.py --rounds 5 --repeats 200

Exits with status 1 if attnbook in a fresh Python is slower than PyTorch. Not a test: the
numbers depend on the machine. Record them in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from _machine import cpu_model  # bench/, beside this script

COLUMNS = {
    "fresh": {},
    "opt-out": {"ATTNBOOK_NO_MALLOPT": "1"},
    "build-env": {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"},
}
ATTNBOOK = ("attnbook function", "attnbook written out")
TORCH = ("torch fused", "torch written out")
TARGET = 1.0
B, T, D, H = 16, 32, 64, 4


def inputs():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D))
    weights = [rng.standard_normal((D, D)) / np.sqrt(D) for _ in range(4)]
    g = rng.standard_normal((B, T, D))  # the upstream gradient
    mask = np.tril(np.ones((T, T), dtype=bool))  # causal: True = may attend
    return x, weights, g, mask


def one_blas_thread():
    import ctypes
    import glob

    import numpy as np

    for lib in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "openblas_set_num_threads"):
            if hasattr(handle, name):
                getattr(handle, name)(1)
                return


def attnbook_step(variant):
    import numpy as np

    import attnbook as ab

    x, weights, g, mask = inputs()
    d_head = D // H

    def function():
        x_t = ab.Tensor(x, requires_grad=True)
        W = [ab.Tensor(w, requires_grad=True) for w in weights]
        out, _ = ab.multi_head_attention(x_t, x_t, x_t, *W, n_heads=H, mask=mask)
        (out * g).sum().backward()
        return [x_t.grad] + [w.grad for w in W]

    def written_out():
        x_t = ab.Tensor(x, requires_grad=True)
        W_q, W_k, W_v, W_o = W = [ab.Tensor(w, requires_grad=True) for w in weights]

        def heads(y):  # (B, T, d) -> (B, H, T, d_head)
            return y.reshape(B, T, H, d_head).swapaxes(1, 2)

        q, k, v = heads(x_t @ W_q), heads(x_t @ W_k), heads(x_t @ W_v)
        scores = (q @ k.swapaxes(-1, -2)) * (1.0 / np.sqrt(d_head))  # (B, H, T, T)
        o = ab.where(mask, scores, -np.inf).softmax(-1) @ v  # (B, H, T, d_head)
        out = o.swapaxes(1, 2).reshape(B, T, D) @ W_o
        (out * g).sum().backward()
        return [x_t.grad] + [w.grad for w in W]

    return {"attnbook function": function, "attnbook written out": written_out}[variant]


def torch_step(variant):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    x, weights, g, mask = inputs()
    d_head = D // H
    x_t = torch.from_numpy(x).requires_grad_()
    W = [torch.from_numpy(w).requires_grad_() for w in weights]
    mask_t, g_t = torch.from_numpy(mask), torch.from_numpy(g)

    def fused(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask_t)

    def written_out(q, k, v):
        scores = (q @ k.transpose(-1, -2)) / d_head**0.5
        return scores.masked_fill(~mask_t, float("-inf")).softmax(-1) @ v

    attend = {"torch fused": fused, "torch written out": written_out}[variant]

    def step():
        for t in (x_t, *W):
            t.grad = None
        W_q, W_k, W_v, W_o = W

        def heads(y):
            return y.view(B, T, H, d_head).transpose(1, 2)

        o = attend(heads(x_t @ W_q), heads(x_t @ W_k), heads(x_t @ W_v))
        out = o.transpose(1, 2).reshape(B, T, D) @ W_o
        (out * g_t).sum().backward()
        return [t.grad.numpy() for t in (x_t, *W)]

    return step


def child(variant, repeats):
    """Time one variant in this fresh process; print one JSON line."""
    import resource
    import time

    one_blas_thread()
    step = attnbook_step(variant) if variant in ATTNBOOK else torch_step(variant)
    for _ in range(3):
        step()
    best, faults = float("inf"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats
    extra = {}
    if variant in ATTNBOOK:
        from attnbook import _malloc

        extra["malloc"] = _malloc.applied
    print(json.dumps({"best": best, "faults": faults, **extra}))


def check_agreement(variants):
    """All variants compute the same gradients (in this parent, untimed)."""
    import numpy as np

    expected = attnbook_step("attnbook function")()
    for name in variants:
        step = attnbook_step(name) if name in ATTNBOOK else torch_step(name)
        for a, b in zip(step(), expected):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-12), f"{name} disagrees"


def run_child(variant, column, repeats):
    env = dict(COLUMNS[column])  # nothing else: no PATH, no thread or malloc variables
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", variant,
                          "--repeats", str(repeats)], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"the {variant} / {column} child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    cpu = cpu_model() or "unknown"
    return f"{os.cpu_count()} x {cpu}, Python {sys.version.split()[0]}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed steps per child process")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per cell")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.repeats)
        return 0

    import numpy as np

    try:
        import torch
    except ImportError:
        torch = None
    variants = ATTNBOOK + (TORCH if torch is not None else ())
    check_agreement(variants)
    print("multi-head attention forward + backward, (16, 32, 64), 4 heads, causal, float64, one thread")
    print(f"machine: {machine()}, numpy {np.__version__}, torch {torch.__version__ if torch else 'not installed'}")
    print(f"each cell: best of {args.rounds} fresh processes x {args.repeats} steps; "
          "in parentheses: minor page faults per step (median over the processes)\n")
    cells = {}  # (variant, column) -> list of child results
    for _ in range(args.rounds):
        for column in COLUMNS:
            for variant in variants:
                if variant in TORCH and column == "opt-out":
                    continue  # a process without attnbook: the fresh column is the same
                cells.setdefault((variant, column), []).append(run_child(variant, column, args.repeats))

    def best(variant, column):
        if variant in TORCH and column == "opt-out":
            column = "fresh"
        return min(r["best"] for r in cells[(variant, column)])

    print("| variant | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for variant in variants:
        row = []
        for column in COLUMNS:
            key = (variant, "fresh" if variant in TORCH and column == "opt-out" else column)
            faults = statistics.median(r["faults"] for r in cells[key])
            row.append(f"{best(variant, column) * 1e3:.2f} ms ({faults:.0f})")
        print(f"| {variant} | " + " | ".join(row) + " |")
    missed = False
    if torch is not None:
        ratios = []
        for column in COLUMNS:
            ratio = min(best(v, column) for v in ATTNBOOK) / min(best(v, column) for v in TORCH)
            ratios.append(f"**{ratio:.2f}**")
            missed = missed or (column == "fresh" and ratio > TARGET)
        print("| ratio, best attnbook / best torch | " + " | ".join(ratios) + " |")
    applied = cells[("attnbook function", "fresh")][0]["malloc"]
    print(f"\nimport attnbook set (fresh column): {applied or 'nothing'}; "
          f"target for the fresh column: ratio <= {TARGET}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
