"""Attention kernels of attnbook against PyTorch, measured on this machine in one run.

Three comparisons, each timed interleaved (attnbook, then PyTorch, then attnbook ...) and
reported as the best of N, so that load from other processes hits both sides alike. The
clock is this process's CPU time by default (``--clock wall`` for wall-clock time): on a
machine shared with other jobs, wall-clock time mostly measures the scheduler.

1. ``scaled_dot_product_attention`` on (8, T, 64), T in {1024, 2048}, float32 and float64,
   against ``torch.nn.functional.scaled_dot_product_attention``.    target: ratio <= 1.2
2. ``flash_attention`` at T = 4096, d = 64, batch 1 and batch 8, float64, against attnbook's
   own ``scaled_dot_product_attention`` (and torch eager, shown, if installed): the forward
   pass on ndarrays (target: time <= 1.0x, peak memory <= 5 %) and forward + backward on
   Tensors (target: peak memory <= 10 %; time shown). attnbook's peak memory is measured
   with tracemalloc (NumPy reports its buffers to it), torch's as the growth of the
   resident set. ``--flash-T`` and ``--flash-batches`` change the sizes. Before it, the
   training peak memory of both at batch 1 for T = 256 ... 4096 (target at T = 2048: <= 10 %).
3. Forward and backward of ``multi_head_attention`` on Tensors, (16, 32, 64), 4 heads, causal
   mask, against PyTorch eager autograd (the faster of the fused
   ``F.scaled_dot_product_attention`` and the written-out math).        target: ratio <= 1.5

Usage::

    .venv/bin/python bench/attention_speed.py               # one BLAS / torch thread
    .venv/bin/python bench/attention_speed.py --threads 2   # both sides on two threads
    .venv/bin/python bench/attention_speed.py --only mha    # one comparison

It prints every figure and ratio and exits with status 1 if a target is missed. It measures
what a reader gets: it refuses to run with the book build's glibc ``MALLOC_*`` variables set
(they make large fresh temporaries cheaper). Without torch, only comparison 2 runs (without
its torch column). Record the output in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc

from _machine import cpu_model  # bench/, beside this script

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (both sides)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many timings")
    parser.add_argument("--only", choices=["sdpa", "flash", "mha"], action="append",
                        help="run only this comparison (repeatable); default: all three")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="time.process_time of this process (default) or wall-clock time")
    parser.add_argument("--flash-T", type=int, default=4096, help="sequence length of comparison 2")
    parser.add_argument("--flash-batches", type=int, nargs="+", default=[1, 8],
                        help="batch sizes of comparison 2")
    return parser.parse_args(argv)


ARGS = parse_args()
if any(name.startswith("MALLOC_") for name in os.environ):
    sys.exit("unset the MALLOC_* environment variables (the book build's allocator settings): "
             "this benchmark measures what a reader gets in a fresh Python.")
# BLAS reads its thread count once, when NumPy loads it: set it before the import.
for _name in THREAD_VARIABLES:
    os.environ[_name] = str(ARGS.threads)

import numpy as np  # noqa: E402

import attnbook as ab  # noqa: E402

try:
    import torch  # noqa: E402
    import torch.nn.functional as F  # noqa: E402

    torch.set_num_threads(ARGS.threads)
except ImportError:
    torch = F = None

TARGETS = {"sdpa": 1.2, "flash_forward_time": 1.0, "flash_forward_memory": 0.05,
           "flash_training_time": None, "flash_training_memory": 0.10, "mha": 1.5}


# ------------------------------------------------------------------------------ helpers
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def best_times(functions, repeats):
    """Best-of-``repeats`` seconds of each function, run interleaved round by round.

    The clock is ``--clock``: this process's CPU time (user + system, so page faults of
    fresh temporaries count) by default, which other programs on a shared machine do not
    inflate; or wall-clock time.
    """
    clock = CLOCKS[ARGS.clock]
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for n, f in enumerate(functions):
            start = clock()
            f()
            best[n] = min(best[n], clock() - start)
    return best


def peak_bytes(f):
    """Peak bytes allocated (NumPy reports its buffers to tracemalloc) while ``f`` runs."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = f()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del result
    return peak


class Report:
    def __init__(self):
        self.missed = []

    def ratio(self, label, ours, theirs, target, unit="ms", scale=1e3):
        """Print ours / theirs; a ``target`` of None means the ratio is shown, not judged."""
        ratio = ours / theirs
        ok = target is None or ratio <= target
        if not ok:
            self.missed.append(label)
        verdict = ("(no target)" if target is None
                   else f"(target <= {target})  {'ok' if ok else 'MISSED'}")
        print(f"  {label:<44} {ours * scale:10.2f} {unit} {theirs * scale:10.2f} {unit}"
              f"   ratio {ratio:5.3f}  {verdict}")
        return ratio


def machine():
    cpu = cpu_model() or "unknown"
    blas = "unknown"
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{info['name']} {info['version']}"
    except Exception:  # noqa: BLE001 -- older NumPy: no dict mode
        pass
    return {
        "cpus (nproc)": os.cpu_count(),
        "cpu model": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": "not installed" if torch is None else torch.__version__,
        "attnbook": ab.__version__,
        "numpy BLAS": blas,
        "threads (both sides)": ARGS.threads,
        "clock": {"cpu": "process CPU time (time.process_time)",
                  "wall": "wall clock (time.perf_counter)"}[ARGS.clock],
    }


# ------------------------------------------------------------------------------ benchmarks
def bench_sdpa(report, rng):
    print("\n1. scaled_dot_product_attention, (8, T, 64): attnbook vs torch")
    for dtype in (np.float32, np.float64):
        for T in (1024, 2048):
            q, k, v = rng.standard_normal((3, 8, T, 64)).astype(dtype)
            tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
            out, _ = ab.scaled_dot_product_attention(q, k, v)
            expected = F.scaled_dot_product_attention(tq, tk, tv).numpy()
            assert out.dtype == dtype, f"output dtype {out.dtype} != input dtype {dtype}"
            tol = 1e-4 if dtype == np.float32 else 1e-10
            assert np.allclose(out, expected, rtol=tol, atol=tol), "attnbook and torch disagree"
            del out, expected
            ours, theirs = best_times(
                [lambda: ab.scaled_dot_product_attention(q, k, v),
                 lambda: F.scaled_dot_product_attention(tq, tk, tv)],
                ARGS.repeats,
            )
            report.ratio(f"sdpa T={T:<5} {np.dtype(dtype).name}", ours, theirs, TARGETS["sdpa"])


def peak_rss_bytes(f):
    """Peak growth of the resident set while ``f`` runs (Linux: VmHWM after resetting it).

    For PyTorch, whose CPU allocator tracemalloc does not see. Coarser than tracemalloc:
    it counts touched pages, and memory the C allocator keeps from earlier calls is free
    to reuse without growing the resident set.
    """
    def status(key):
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(key))

    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current resident set
    base = status("VmRSS")
    result = f()
    peak = status("VmHWM") - base
    del result
    return peak


def bench_flash(report, rng, T=4096, d=64, batches=(1, 8)):
    """flash_attention against the plain computation (and torch eager), forward and training."""
    print(f"\n2. flash_attention vs scaled_dot_product_attention (attnbook), (B, {T}, {d}) float64,"
          " default tiles")
    rows = []
    for B in batches:
        q, k, v = rng.standard_normal((3, B, T, d))
        w = rng.standard_normal((B, T, d))  # the upstream gradient dLoss/dO
        forward = {
            "flash": lambda: ab.flash_attention(q, k, v),
            "plain": lambda: ab.scaled_dot_product_attention(q, k, v)[0],
        }

        ts = [ab.Tensor(x, requires_grad=True) for x in (q, k, v)]

        def train(attend):
            def step():
                for t in ts:
                    t.grad = None
                (attend(*ts) * w).sum().backward()
                return [t.grad for t in ts]
            return step

        training = {
            "flash": train(ab.flash_attention),
            "plain": train(lambda *ts: ab.scaled_dot_product_attention(*ts)[0]),
        }
        if torch is not None:
            tq, tk, tv, tw = (torch.from_numpy(x) for x in (q, k, v, w))

            def torch_forward():
                with torch.no_grad():
                    return F.scaled_dot_product_attention(tq, tk, tv)

            leaves = [x.detach().requires_grad_() for x in (tq, tk, tv)]

            def torch_train():
                for t in leaves:
                    t.grad = None
                (F.scaled_dot_product_attention(*leaves) * tw).sum().backward()
                return [t.grad for t in leaves]

            forward["torch"], training["torch"] = torch_forward, torch_train

        # Correctness first (one run each), then memory (one run each), then time.
        out_flash, out_plain = forward["flash"](), forward["plain"]()
        difference = float(np.max(np.abs(out_flash - out_plain)))
        del out_flash, out_plain
        grads_flash, grads_plain = training["flash"](), training["plain"]()
        grad_difference = max(float(np.max(np.abs(a - b)))
                              for a, b in zip(grads_flash, grads_plain))
        del grads_flash, grads_plain
        print(f"  B = {B}: max |flash - plain| = {difference:.1e} (output), "
              f"{grad_difference:.1e} (gradients)")
        assert difference < 1e-10 and grad_difference < 1e-8, "flash and plain disagree"
        memory = {}
        for phase, functions in (("forward", forward), ("training", training)):
            for name, f in functions.items():
                memory[phase, name] = (peak_rss_bytes if name == "torch" else peak_bytes)(f)
        times = {}
        for phase, functions in (("forward", forward), ("training", training)):
            best = best_times(list(functions.values()), ARGS.repeats)
            times.update({(phase, name): t for name, t in zip(functions, best)})
        for phase, label in (("forward", "forward"), ("training", "forward + backward")):
            report.ratio(f"B={B} {label}: flash / plain time", times[phase, "flash"],
                         times[phase, "plain"], TARGETS[f"flash_{phase}_time"])
            report.ratio(f"B={B} {label}: flash / plain peak memory", memory[phase, "flash"],
                         memory[phase, "plain"], TARGETS[f"flash_{phase}_memory"], unit="MiB",
                         scale=1 / 2**20)
            rows.append((B, label, times, memory, phase))
    print("\n  | batch | pass | flash time | plain time | torch time | flash / plain time "
          "| flash memory | plain memory | torch memory (RSS) | flash / plain memory |")
    print("  |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for B, label, times, memory, phase in rows:
        torch_time = (f"{times[phase, 'torch'] * 1e3:.0f} ms" if (phase, "torch") in times
                      else "n/a")
        torch_memory = (f"{memory[phase, 'torch'] / 2**20:.0f} MiB" if (phase, "torch") in memory
                        else "n/a")
        print(f"  | {B} | {label} | {times[phase, 'flash'] * 1e3:.0f} ms "
              f"| {times[phase, 'plain'] * 1e3:.0f} ms | {torch_time} "
              f"| {times[phase, 'flash'] / times[phase, 'plain']:.2f} "
              f"| {memory[phase, 'flash'] / 2**20:.1f} MiB "
              f"| {memory[phase, 'plain'] / 2**20:.0f} MiB "
              f"| {torch_memory} | {memory[phase, 'flash'] / memory[phase, 'plain']:.3f} |")


def bench_flash_memory(report, rng, lengths=(256, 512, 1024, 2048, 4096), d=64):
    """Training memory (forward + backward on Tensors, float64, batch 1) as T grows."""
    print(f"\n2b. training peak memory (tracemalloc), forward + backward, (T, {d}) float64")

    def training_peak(attend, T):
        q, k, v = (ab.Tensor(x, requires_grad=True) for x in rng.standard_normal((3, T, d)))
        w = rng.standard_normal((T, d))
        return peak_bytes(lambda: (attend(q, k, v) * w).sum().backward())

    flash, plain = [], []
    for T in lengths:
        flash.append(training_peak(ab.flash_attention, T))
        plain.append(training_peak(lambda *ts: ab.scaled_dot_product_attention(*ts)[0], T))
    print("\n  | T | flash | plain | flash / plain |")
    print("  |---:|---:|---:|---:|")
    for T, f, p in zip(lengths, flash, plain):
        print(f"  | {T} | {f / 2**20:.2f} MiB | {p / 2**20:.1f} MiB | {f / p:.3f} |")
    slopes = [np.polyfit(np.log(lengths[-3:]), np.log(m[-3:]), 1)[0] for m in (flash, plain)]
    print(f"  growth exponent over the last three lengths: flash {slopes[0]:.2f}, "
          f"plain {slopes[1]:.2f}")
    if 2048 in lengths:
        n = lengths.index(2048)
        report.ratio("training peak memory at T = 2048", flash[n], plain[n],
                     TARGETS["flash_training_memory"], unit="MiB", scale=1 / 2**20)


def bench_mha(report, rng, B=16, T=32, d=64, n_heads=4):
    print(f"\n3. multi_head_attention forward + backward, ({B}, {T}, {d}), {n_heads} heads, causal")
    x = rng.standard_normal((B, T, d))
    weights = [rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(4)]
    g = rng.standard_normal((B, T, d))  # the upstream gradient
    mask = ab.causal_mask(T)
    d_head = d // n_heads

    def ours():
        x_t = ab.Tensor(x, requires_grad=True)
        W = [ab.Tensor(w, requires_grad=True) for w in weights]
        out, _ = ab.multi_head_attention(x_t, x_t, x_t, *W, n_heads=n_heads, mask=mask)
        (out * g).sum().backward()
        return x_t.grad, [w.grad for w in W]

    x_torch = torch.from_numpy(x).requires_grad_()
    W_torch = [torch.from_numpy(w).requires_grad_() for w in weights]
    mask_torch, g_torch = torch.from_numpy(mask), torch.from_numpy(g)

    def heads(y):
        return y.view(B, T, n_heads, d_head).transpose(1, 2)  # (B, H, T, d_head)

    def torch_step(attend):
        for t in (x_torch, *W_torch):
            t.grad = None
        W_q, W_k, W_v, W_o = W_torch
        o = attend(heads(x_torch @ W_q), heads(x_torch @ W_k), heads(x_torch @ W_v))
        out = o.transpose(1, 2).reshape(B, T, d) @ W_o  # (B, T, d)
        (out * g_torch).sum().backward()
        return x_torch.grad, [w.grad for w in W_torch]

    def fused(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask_torch)

    def math(q, k, v):
        scores = (q @ k.transpose(-1, -2)) / d_head**0.5  # (B, H, T, T)
        return scores.masked_fill(~mask_torch, float("-inf")).softmax(-1) @ v

    grads, expected = ours(), torch_step(fused)
    for a, b in zip([grads[0], *grads[1]], [expected[0], *expected[1]]):
        assert np.allclose(a, b.numpy(), rtol=1e-9, atol=1e-9), "gradients disagree with torch"
    ours_t, fused_t, math_t = best_times(
        [ours, lambda: torch_step(fused), lambda: torch_step(math)], 20 * ARGS.repeats
    )
    print(f"  torch fused {fused_t * 1e3:.2f} ms, torch written-out {math_t * 1e3:.2f} ms")
    report.ratio("mha forward + backward", ours_t, min(fused_t, math_t), TARGETS["mha"])


def main():
    print("attnbook attention kernels vs PyTorch")
    for key, value in machine().items():
        print(f"  {key}: {value}")
    rng = np.random.default_rng(0)
    report = Report()
    for name, bench in (("sdpa", bench_sdpa), ("flash", bench_flash), ("mha", bench_mha)):
        if ARGS.only is not None and name not in ARGS.only:
            continue
        if torch is None and name != "flash":
            print(f"\n{name}: skipped (torch is not installed)")
            continue
        if name == "flash":
            bench_flash_memory(report, rng)
            bench(report, rng, T=ARGS.flash_T, batches=ARGS.flash_batches)
        else:
            bench(report, rng)
    if report.missed:
        print(f"\nMISSED {len(report.missed)} target(s): {', '.join(report.missed)}")
        return 1
    print("\nevery target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
