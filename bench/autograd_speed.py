"""attnbook's autograd against PyTorch eager, as a reader gets it: a fresh Python, no variables.

Forward and backward of multi-head attention on Tensors, (B, T, d) = (16, 32, 64), 4 heads,
causal mask, float64, one BLAS thread (one torch thread). Four ways of computing it are
timed side by side, interleaved round by round, best of N:

* attnbook ``multi_head_attention`` (the package function: fused softmax node);
* attnbook written out (the same math as Tensor operations: ``@``, ``where``, ``.softmax``);
* PyTorch fused (``F.scaled_dot_product_attention``);
* PyTorch written out (``@``, ``masked_fill``, ``.softmax``).

The ratio is the best of attnbook's two over the best of PyTorch's two (issue 12: at most 1.0).

Each configuration runs in its own child process started with an EMPTY environment (the
book's build sets glibc malloc variables; a reader's notebook does not), so that nothing
of this shell leaks in. The configurations:

* ``default``: ``import attnbook`` as a reader does (it sets glibc's malloc thresholds,
  see ``attnbook/_malloc.py``);
* ``opt-out``: the same with ``ATTNBOOK_NO_MALLOPT=1``, i.e. glibc's defaults;
* ``build-env``: the variables the book's build used to set
  (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) and the opt-out, for reference.

The BLAS thread count is set to one inside the child through OpenBLAS's own API, not
through the environment. The configurations alternate (default, opt-out, build-env,
default, ...) for ``--rounds`` rounds, so load from other processes on a shared machine
hits each alike; the table shows the best round of each.

Usage::

    .venv/bin/python bench/autograd_speed.py                 # torch if installed
    .venv/bin/python bench/autograd_speed.py --rounds 3 --repeats 200

Not a test: the numbers depend on the machine. Record them in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CONFIGS = {
    "default": {},
    "opt-out": {"ATTNBOOK_NO_MALLOPT": "1"},
    "build-env": {"ATTNBOOK_NO_MALLOPT": "1", "MALLOC_MMAP_THRESHOLD_": "67108864",
                  "MALLOC_TRIM_THRESHOLD_": "268435456"},
}
TARGET = 1.0


def child(repeats):
    """Time the four variants in this process; print one JSON line of best times (s)."""
    import ctypes
    import glob
    import resource
    import time

    import numpy as np

    import attnbook as ab
    from attnbook import _malloc

    for lib in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "openblas_set_num_threads"):
            if hasattr(handle, name):
                getattr(handle, name)(1)
                break
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(1)

    B, T, d, H = 16, 32, 64, 4
    d_head = d // H
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, d))
    weights = [rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(4)]
    g = rng.standard_normal((B, T, d))  # the upstream gradient
    mask = ab.causal_mask(T)

    def attnbook_function():
        x_t = ab.Tensor(x, requires_grad=True)
        W = [ab.Tensor(w, requires_grad=True) for w in weights]
        out, _ = ab.multi_head_attention(x_t, x_t, x_t, *W, n_heads=H, mask=mask)
        (out * g).sum().backward()
        return [x_t.grad] + [w.grad for w in W]

    def attnbook_written_out():
        x_t = ab.Tensor(x, requires_grad=True)
        W_q, W_k, W_v, W_o = W = [ab.Tensor(w, requires_grad=True) for w in weights]

        def heads(y):  # (B, T, d) -> (B, H, T, d_head)
            return y.reshape(B, T, H, d_head).swapaxes(1, 2)

        q, k, v = heads(x_t @ W_q), heads(x_t @ W_k), heads(x_t @ W_v)
        scores = (q @ k.swapaxes(-1, -2)) * (1.0 / np.sqrt(d_head))  # (B, H, T, T)
        o = ab.where(mask, scores, -np.inf).softmax(-1) @ v  # (B, H, T, d_head)
        out = o.swapaxes(1, 2).reshape(B, T, d) @ W_o
        (out * g).sum().backward()
        return [x_t.grad] + [w.grad for w in W]

    variants = {"attnbook function": attnbook_function, "attnbook written out": attnbook_written_out}
    expected = attnbook_function()
    if torch is not None:
        x_torch = torch.from_numpy(x).requires_grad_()
        W_torch = [torch.from_numpy(w).requires_grad_() for w in weights]
        mask_torch, g_torch = torch.from_numpy(mask), torch.from_numpy(g)

        def torch_step(attend):
            for t in (x_torch, *W_torch):
                t.grad = None
            W_q, W_k, W_v, W_o = W_torch

            def heads(y):
                return y.view(B, T, H, d_head).transpose(1, 2)

            o = attend(heads(x_torch @ W_q), heads(x_torch @ W_k), heads(x_torch @ W_v))
            out = o.transpose(1, 2).reshape(B, T, d) @ W_o
            (out * g_torch).sum().backward()
            return [t.grad.numpy() for t in (x_torch, *W_torch)]

        def fused(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask_torch)

        def written_out(q, k, v):
            scores = (q @ k.transpose(-1, -2)) / d_head**0.5
            return scores.masked_fill(~mask_torch, float("-inf")).softmax(-1) @ v

        variants["torch fused"] = lambda: torch_step(fused)
        variants["torch written out"] = lambda: torch_step(written_out)
    for name, f in variants.items():  # every variant computes the same gradients
        for a, b in zip(f(), expected):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-12), f"{name} disagrees"

    best = dict.fromkeys(variants, float("inf"))
    faults = dict.fromkeys(variants, 0)  # minor page faults: memory mapped in afresh
    for _ in range(repeats):
        for name, f in variants.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - start)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults = {name: n / repeats for name, n in faults.items()}
    print(json.dumps({"best": best, "faults": faults, "malloc": _malloc.applied,
                      "torch": None if torch is None else torch.__version__,
                      "numpy": np.__version__, "environ": sorted(os.environ)}))


def run_child(config, repeats):
    env = dict(CONFIGS[config])  # nothing else: no PATH, no thread or malloc variables
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--repeats", str(repeats)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"the {config} child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} x {cpu}, Python {sys.version.split()[0]}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed calls of each variant per child")
    parser.add_argument("--rounds", type=int, default=3, help="children started per configuration")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.repeats)
        return 0

    print(f"multi-head attention forward + backward, (16, 32, 64), 4 heads, causal, float64, one thread")
    print(f"machine: {machine()}; best of {args.repeats} calls x {args.rounds} rounds per configuration")
    results = {}
    for _ in range(args.rounds):
        for config in CONFIGS:
            r = run_child(config, args.repeats)
            if config not in results:
                results[config] = r
            else:
                for name, t in r["best"].items():
                    results[config]["best"][name] = min(results[config]["best"][name], t)
                    results[config]["faults"][name] = min(results[config]["faults"][name], r["faults"][name])
    first = next(iter(results.values()))
    print(f"numpy {first['numpy']}, torch {first['torch'] or 'not installed'}\n")
    names = list(first["best"])
    print(f"| configuration | {' | '.join(names)} | ratio |")
    print("|---|" + "---:|" * (len(names) + 1))
    missed = False
    for config, r in results.items():
        best = r["best"]
        cells = " | ".join(f"{best[n] * 1e3:.2f} ms ({r['faults'][n]:.0f})" for n in names)
        ours = min(v for n, v in best.items() if n.startswith("attnbook"))
        theirs = [v for n, v in best.items() if n.startswith("torch")]
        ratio = f"{ours / min(theirs):.2f}" if theirs else "-"
        if config == "default" and theirs and ours / min(theirs) > TARGET:
            missed = True
        print(f"| {config} | {cells} | {ratio} |")
    print("\nIn parentheses: minor page faults per call (memory mapped in afresh), fewest of the rounds.")
    print("ratio: best attnbook variant / best torch variant, in the same child process "
          f"(target for 'default': <= {TARGET}).")
    print("malloc settings applied by import attnbook (default):", results["default"]["malloc"] or "none")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
