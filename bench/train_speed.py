"""Training speed of the book's models: attnbook's NumPy autograd against PyTorch eager on the CPU.

Each model is trained for a fixed number of steps (forward, cross-entropy, backward,
global-norm clipping, Adam update) on the same random batches, in attnbook and in an
equivalent PyTorch model of the same sizes, and steps per second are printed with the
ratio. Both run on ONE thread: set ``OPENBLAS_NUM_THREADS=1`` before starting Python
(this script refuses to run otherwise); PyTorch gets ``torch.set_num_threads(1)``.
PyTorch is timed in float64 (attnbook's precision, the like-for-like comparison) and
float32 (its default). Runs alternate between the frameworks so that background load
hits both alike, and the median over repeats is reported. Time is the process's CPU
time, so other programs on a shared machine do not count.

Usage::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/train_speed.py [--steps 30] [--repeats 3]

Not a test: numbers depend on the machine. Record them in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from _machine import cpu_model  # bench/, beside this script

from attnbook.losses import cross_entropy
from attnbook.optim import Adam, clip_grad_norm
from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
from attnbook.transformer import CausalLM, EncoderDecoderTransformer, TransformerConfig

V_SRC, V_TGT, V_LM = 80, 90, 55
B = 32


def seq2seq_batches(rng, n, T_src=20, T_tgt=22):
    return [(rng.integers(4, V_SRC, (B, T_src)), rng.integers(4, V_TGT, (B, T_tgt)),
             rng.integers(4, V_TGT, (B, T_tgt))) for _ in range(n)]


def lm_batches(rng, n, L=32):
    return [(rng.integers(4, V_LM, (B, L)), rng.integers(4, V_LM, (B, L))) for _ in range(n)]


# ------------------------------------------------------------------------------ attnbook
def attnbook_step_fn(model, loss_of):
    opt = Adam(model.parameters(), lr=1e-3)

    def step(batch):
        model.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()

    return step


def attnbook_models(rng):
    yield "seq2seq, no attention", Seq2Seq(Seq2SeqConfig(V_SRC, V_TGT, attention="none"), rng=rng), "s2s"
    yield "seq2seq, additive attention", Seq2Seq(Seq2SeqConfig(V_SRC, V_TGT), rng=rng), "s2s"
    cfg = TransformerConfig(vocab=V_SRC, tgt_vocab=V_TGT, d_model=64, n_heads=4, d_ff=256, n_layers=2,
                            norm="post", positions="sinusoidal")
    yield "Transformer encoder-decoder", EncoderDecoderTransformer(cfg, rng=rng), "s2s"
    cfg = TransformerConfig(vocab=V_LM, d_model=64, n_heads=4, d_ff=256, n_layers=2, norm="pre",
                            positions="sinusoidal")
    yield "causal LM (pre-LN)", CausalLM(cfg, rng=rng), "lm"


def attnbook_loss(kind):
    if kind == "s2s":
        return lambda model, b: cross_entropy(model(b[0], b[1]), b[2])
    return lambda model, b: cross_entropy(model(b[0]), b[1])


# ------------------------------------------------------------------------------- PyTorch
def torch_models(torch, dtype):
    nn = torch.nn
    F = torch.nn.functional

    class TorchSeq2Seq(nn.Module):
        def __init__(self, attention, E=32, H=64, D=64, A=64):
            super().__init__()
            self.attention = attention
            self.src_emb, self.tgt_emb = nn.Embedding(V_SRC, E), nn.Embedding(V_TGT, E)
            self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
            self.init_state = nn.Linear(2 * H, D)
            if attention:
                self.W_q = nn.Parameter(torch.empty(D, A).uniform_(-D**-0.5, D**-0.5))
                self.W_k = nn.Parameter(torch.empty(2 * H, A).uniform_(-(2 * H) ** -0.5, (2 * H) ** -0.5))
                self.w_v = nn.Parameter(torch.empty(A).uniform_(-A**-0.5, A**-0.5))
            else:
                self.bridge = nn.Linear(2 * H, 2 * H)
            self.decoder = nn.GRUCell(E + 2 * H, D)
            self.out = nn.Linear(D + 2 * H + E, V_TGT)

        def forward(self, src, tgt_in):
            h, last = self.encoder(self.src_emb(src))  # (B, T, 2H), (2, B, H)
            summary = torch.cat([last[0], last[1]], dim=-1)  # [h_fwd_T; h_bwd_1]
            s = torch.tanh(self.init_state(summary))
            y = self.tgt_emb(tgt_in)
            if not self.attention:
                c = torch.tanh(self.bridge(summary))
                S, C = [], []
                for i in range(y.shape[1]):
                    s = self.decoder(torch.cat([y[:, i], c], -1), s)
                    S.append(s)
                    C.append(c)
            else:
                K = h @ self.W_k
                S, C = [], []
                for i in range(y.shape[1]):
                    e = torch.tanh((s @ self.W_q)[:, None, :] + K) @ self.w_v
                    alpha = torch.softmax(e, dim=-1)
                    c = torch.bmm(alpha[:, None, :], h)[:, 0]
                    s = self.decoder(torch.cat([y[:, i], c], -1), s)
                    S.append(s)
                    C.append(c)
            return self.out(torch.cat([torch.stack(S, 1), torch.stack(C, 1), y], -1))

    def sinusoid(T, d):
        pos = torch.arange(T, dtype=dtype)[:, None]
        angle = pos / 10000 ** (torch.arange(0, d, 2, dtype=dtype) / d)
        pe = torch.zeros(T, d, dtype=dtype)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
        return pe

    class TorchTransformer(nn.Module):
        def __init__(self, causal_lm):
            super().__init__()
            self.lm = causal_lm
            d = 64
            if causal_lm:
                self.emb = nn.Embedding(V_LM, d)
                layer = nn.TransformerEncoderLayer(d, 4, 256, dropout=0.0, batch_first=True, norm_first=True)
                self.body = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(d), enable_nested_tensor=False)
                self.out = nn.Linear(d, V_LM)
            else:
                self.src_emb, self.tgt_emb = nn.Embedding(V_SRC, d), nn.Embedding(V_TGT, d)
                # Post-LN without final norms, as attnbook's post-LN model (nn.Transformer adds two).
                enc = nn.TransformerEncoderLayer(d, 4, 256, dropout=0.0, batch_first=True)
                dec = nn.TransformerDecoderLayer(d, 4, 256, dropout=0.0, batch_first=True)
                self.encoder = nn.TransformerEncoder(enc, 2, enable_nested_tensor=False)
                self.decoder = nn.TransformerDecoder(dec, 2)
                self.out = nn.Linear(d, V_TGT)

        def forward(self, *ids):
            d = 64
            if self.lm:
                x = self.emb(ids[0]) * d**0.5 + sinusoid(ids[0].shape[1], d)
                T = x.shape[1]
                mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=dtype)
                return self.out(self.body(x, mask=mask, is_causal=True))
            src, tgt = ids
            xs = self.src_emb(src) * d**0.5 + sinusoid(src.shape[1], d)
            xt = self.tgt_emb(tgt) * d**0.5 + sinusoid(tgt.shape[1], d)
            mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=dtype)
            memory = self.encoder(xs)
            return self.out(self.decoder(xt, memory, tgt_mask=mask, tgt_is_causal=True))

    yield "seq2seq, no attention", TorchSeq2Seq(False), "s2s"
    yield "seq2seq, additive attention", TorchSeq2Seq(True), "s2s"
    yield "Transformer encoder-decoder", TorchTransformer(False), "s2s"
    yield "causal LM (pre-LN)", TorchTransformer(True), "lm"


def torch_step_fn(torch, model, kind, dtype):
    model.to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        ids = [torch.from_numpy(b) for b in batch]
        logits = model(*ids[:-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[-1].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def steps_per_second(step, batches, warmup=2):
    for b in batches[:warmup]:
        step(b)
    t = time.process_time()
    for b in batches:
        step(b)
    return len(batches) / (time.process_time() - t)


def machine():
    cpu = cpu_model() or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per framework (median reported)")
    parser.add_argument("--no-torch", action="store_true", help="time attnbook only")
    args = parser.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        raise SystemExit("set OPENBLAS_NUM_THREADS=1 (and OMP_NUM_THREADS=1) before running: one BLAS thread")
    torch = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = {"s2s": seq2seq_batches(rng, args.steps), "lm": lm_batches(rng, args.steps)}
    ours = list(attnbook_models(np.random.default_rng(1)))
    dtypes = {"f64": torch.float64, "f32": torch.float32} if torch else {}
    theirs = {label: list(torch_models(torch, dtype)) for label, dtype in dtypes.items()}
    print(f"machine: {machine()}" + (f", torch {torch.__version__}" if torch else "") + "; one thread; batch 32")
    header = f"{'model':30s} {'attnbook':>9s}" + "".join(f" {'torch ' + k:>10s}" for k in dtypes)
    header += "".join(f" {k + ' ratio':>10s}" for k in dtypes)
    print(header + "\n" + "-" * len(header))
    for i, (name, model, kind) in enumerate(ours):
        steps = {"attnbook": attnbook_step_fn(model, attnbook_loss(kind))}
        for label, dtype in dtypes.items():
            steps[label] = torch_step_fn(torch, theirs[label][i][1], kind, dtype)
        runs = {label: [] for label in steps}
        for _ in range(args.repeats):  # alternate, so background load hits every side alike
            for label, step in steps.items():
                runs[label].append(steps_per_second(step, data[kind]))
        med = {label: statistics.median(v) for label, v in runs.items()}
        cells = [f"{med['attnbook']:9.1f}"] + [f"{med[k]:10.1f}" for k in dtypes]
        cells += [f"{med[k] / med['attnbook']:10.2f}" for k in dtypes]
        print(f"{name:30s} " + " ".join(cells))
    print("steps/s of CPU time; ratio = torch steps/s over attnbook steps/s (below 1: attnbook is faster)")


if __name__ == "__main__":
    main()
