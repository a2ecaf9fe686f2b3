#!/usr/bin/env python3
"""Mutation testing of attnbook with mutmut: plant bugs, see whether the package tests catch them.

Not part of the test command (it takes tens of minutes of CPU). See MUTATION.md for the last
campaign's numbers and the triage of every surviving mutant.

    python3 tools/mutate.py                    # the campaign of MUTATION.md (all modules below)
    python3 tools/mutate.py softmax masks      # only these modules
    python3 tools/mutate.py --sample 40 tensor # at most 40 behavioural mutants of tensor.py
    python3 tools/mutate.py --report           # print the last run's table and survivors again

How it works. mutmut (pinned in requirements-mutation.txt; installed into .venv by this script)
works in a scratch copy, ``_build/mutation/``: the package sources (``code/src``) and tests
(``code/tests``) are copied there with a ``pyproject.toml`` naming the modules to mutate and the
test files that exercise them. Then

1. mutmut generates every mutant of those modules and runs the selected tests once, recording
   which tests reach which function (so each mutant later runs only the tests that can see it);
2. this script drops *cosmetic* mutants, those that change nothing but the text of a string
   literal (mutmut rewrites every error message to ``"XX...XX"`` or upper case; the tests match
   only the key words of a message, and a reworded message is not a behavioural bug), and with
   ``--sample N`` keeps a seeded random sample of N behavioural mutants per module;
3. mutmut runs the kept mutants one at a time (``--max-children``, default 1: the machine is
   shared), each under a CPU-time limit of 2 x 15 x (its tests' clean time + 1 s);
4. the script prints, per module, how many mutants were generated, cosmetic, run, killed,
   survived, timed out, and writes every survivor's diff to ``_build/mutation/survivors.txt``
   (and the counts to ``_build/mutation/report.json``).

A survivor is either a missing test (write one that fails with the mutant: check with
``cd _build/mutation && ../../.venv/bin/mutmut apply <name>`` on a copy, or plant the change
by hand) or an equivalent mutant (same behaviour; say why in MUTATION.md). Survivors listed in
``tools/mutation_equivalent.txt`` (one ``module: original line => mutated line`` per entry, as
printed in survivors.txt) are reported as equivalent rather than survived.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "_build" / "mutation"
VENV_BIN = ROOT / ".venv" / "bin"
MUTMUT = "mutmut==3.8.1"
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.txt"

# Modules in priority order, each with the test files that exercise it (mutmut then runs, per
# mutant, only those of these tests that reached the mutated function on the clean run).
_CORE = ["test_softmax_masks.py", "test_gradients.py", "test_kernels.py", "test_reference_torch.py"]
MODULES: dict[str, list[str]] = {
    "softmax": _CORE + ["test_attention.py"],
    "masks": _CORE + ["test_attention.py", "test_nn.py"],
    "scores": _CORE + ["test_scores.py", "test_attention.py"],
    "attention": _CORE + ["test_attention.py", "test_nn.py", "test_flash.py"],
    "positions": _CORE + ["test_positions.py", "test_nn.py"],
    "flash": _CORE + ["test_flash.py", "test_attention.py"],
    "losses": _CORE + ["test_losses.py"],
    "norm": _CORE + ["test_norm.py", "test_nn.py"],
    "dropout": ["test_dropout.py", "test_nn.py"],
    "kvcache": ["test_kvcache.py", "test_nn.py", "test_transformer.py"],
    "optim": ["test_optim.py", "test_reference_torch.py"],
    "tensor": ["test_tensor.py", "test_gradients.py"],
    "gru": ["test_gru.py", "test_kernels.py"],
    "seq2seq": ["test_seq2seq.py", "test_gru.py"],
    "transformer": ["test_transformer.py", "test_nn.py"],
    "decoding": ["test_decoding.py"],
    "metrics": ["test_metrics.py"],
    "train": ["test_train.py"],
    "cache": ["test_cache.py"],
}


def ensure_mutmut() -> Path:
    exe = VENV_BIN / "mutmut"
    if not exe.exists():
        subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "install", "--quiet", "-r",
                        str(ROOT / "requirements-mutation.txt")], check=True)
    return exe


# Modules mutated in full by default; the others (larger, or slower tests) get a seeded random
# sample of this many behavioural mutants unless --sample says otherwise.
FULL = ["softmax", "masks", "norm", "dropout", "kvcache"]
DEFAULT_SAMPLE = 40


def write_workdir(modules: list[str]) -> None:
    """A scratch copy of the sources and tests with mutmut's configuration."""
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    shutil.copytree(ROOT / "code" / "src", WORK / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "code" / "tests", WORK / "tests",
                    ignore=shutil.ignore_patterns("__pycache__"))
    tests = sorted({t for m in modules for t in MODULES[m]})
    toml_list = lambda items: "[" + ", ".join(json.dumps(i) for i in items) + "]"  # noqa: E731
    (WORK / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src/attnbook"]\n'
        f"only_mutate = {toml_list(f'src/attnbook/{m}.py' for m in modules)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(f'tests/{t}' for t in tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        # the docstring examples are left out: mutmut's trampolines change what they print.
        "\n[tool.pytest.ini_options]\n"
        'addopts = "--import-mode=importlib"\n'
    )


def mutmut(*args: str, check: bool = True) -> int:
    # One BLAS thread, as the tests run in the book's build.
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    cmd = ["nice", "-n", "15", str(VENV_BIN / "mutmut"), *args]
    shown = " ".join(cmd[:6]) + (f" ... ({len(cmd) - 6} more)" if len(cmd) > 6 else "")
    print(f"$ (cd {WORK.relative_to(ROOT)}) {shown}", flush=True)
    proc = subprocess.run(cmd, cwd=WORK, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    (WORK / "mutmut.log").open("a").write(proc.stdout)
    if check and proc.returncode != 0:
        print(proc.stdout[-3000:])
        raise SystemExit(f"mutmut {args[0]} failed (exit {proc.returncode}); see {WORK}/mutmut.log")
    return proc.returncode


def function_sources(module: str) -> dict[str, str]:
    """Every function of mutmut's mutated copy of ``module``, by name, as source text."""
    path = WORK / "mutants" / "src" / "attnbook" / f"{module}.py"
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _tokens(source: str) -> list[tuple[int, str]]:
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER}
    return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in skip]


def is_cosmetic(original: str, mutant: str) -> bool:
    """True when the mutant changes only the text of string literals (messages, labels).

    mutmut changes one node, so the tokens that differ are what is left after removing the
    longest common prefix and suffix.
    """
    a, b = _tokens(original)[2:], _tokens(mutant)[2:]  # [2:]: skip "def" and the differing name
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    j = 0
    while j < min(len(a), len(b)) - i and a[len(a) - 1 - j] == b[len(b) - 1 - j]:
        j += 1
    mid_a, mid_b = a[i:len(a) - j], b[i:len(b) - j]
    if not mid_a or len(mid_a) != len(mid_b):
        return False
    for (ta, sa), (tb, sb) in zip(mid_a, mid_b):
        if ta == tokenize.STRING and tb == tokenize.STRING:
            continue  # one string for another
        if ta == tokenize.STRING and (tb, sb) == (tokenize.NAME, "None") and _is_message_argument(sa):
            continue  # as_input(x, "x") -> as_input(x, None): only the name in messages
        return False
    return True


def _is_message_argument(literal: str) -> bool:
    """A short string argument like ``"x"``: the name an input has in error messages."""
    text = literal.strip("'\"")
    return text.isidentifier()


def changed_lines(original: str, mutant: str) -> list[str]:
    a, b = original.splitlines(), mutant.splitlines()
    b[0] = b[0].replace(b[0].split("(", 1)[0], a[0].split("(", 1)[0], 1)  # same def name
    out = []
    for line in difflib.unified_diff(a, b, lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        out.append(line)
    return out


def signature(module: str, diff: list[str]) -> str:
    minus = " / ".join(line[1:].strip() for line in diff if line.startswith("-"))
    plus = " / ".join(line[1:].strip() for line in diff if line.startswith("+"))
    return f"{module}: {minus} => {plus}"


def load_meta(module: str) -> dict[str, int | None]:
    path = WORK / "mutants" / "src" / "attnbook" / f"{module}.py.meta"
    return json.loads(path.read_text())["exit_code_by_key"]


STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          -11: "crashed", -9: "crashed", None: "not run"}


def classify(modules: list[str], sample: int | None, seed: int) -> dict[str, dict]:
    """Per module: every mutant's name, diff, and whether it is cosmetic or chosen to run."""
    plan = {}
    rng = random.Random(seed)
    for module in modules:
        functions = function_sources(module)
        entries = []
        for key in sorted(load_meta(module), key=_natural):
            name = key.rsplit(".", 1)[1]
            original = functions[name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"]
            mutant = functions[name]
            entries.append({"name": key, "cosmetic": is_cosmetic(original, mutant),
                            "diff": changed_lines(original, mutant)})
        behavioural = [e for e in entries if not e["cosmetic"]]
        limit = sample if sample is not None else (None if module in FULL else DEFAULT_SAMPLE)
        chosen = behavioural if limit is None or len(behavioural) <= limit else \
            rng.sample(behavioural, limit)
        for e in entries:
            e["run"] = any(e is c for c in chosen)
        plan[module] = {"entries": entries}
    return plan


def _natural(key: str):
    head, _, number = key.rpartition("__mutmut_")
    return (head, int(number) if number.isdigit() else -1)


def report(plan: dict[str, dict]) -> dict:
    equivalent = set()
    if EQUIVALENT_FILE.exists():
        equivalent = {line.strip() for line in EQUIVALENT_FILE.read_text().splitlines()
                      if line.strip() and not line.startswith("#")}
    rows, survivors, totals = [], [], {}
    for module, data in plan.items():
        codes = load_meta(module)
        count = {"generated": len(data["entries"]),
                 "cosmetic": sum(e["cosmetic"] for e in data["entries"]),
                 "run": 0, "killed": 0, "timeout": 0, "survived": 0, "equivalent": 0,
                 "no tests": 0, "other": 0}
        for e in data["entries"]:
            if not e["run"]:
                continue
            count["run"] += 1
            status = STATUS.get(codes.get(e["name"]), "other")
            if status == "survived" and signature(module, e["diff"]) in equivalent:
                status = "equivalent"
            key = status if status in count else "other"
            count[key] += 1
            if status in ("survived", "no tests", "other", "not run", "crashed"):
                survivors.append((module, e, status))
        rows.append((module, count))
        for k, v in count.items():
            totals[k] = totals.get(k, 0) + v
    columns = ["generated", "cosmetic", "run", "killed", "timeout", "survived", "equivalent",
               "no tests", "other"]
    lines = ["| module | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for module, count in rows + [("**total**", totals)]:
        lines.append(f"| {module} | " + " | ".join(str(count.get(c, 0)) for c in columns) + " |")
    table = "\n".join(lines)
    with (WORK / "survivors.txt").open("w") as f:
        for module, e, status in survivors:
            f.write(f"## {e['name']} ({status})\n{signature(module, e['diff'])}\n")
            f.write("\n".join(e["diff"]) + "\n\n")
    result = {"modules": dict(rows), "total": totals}
    (WORK / "report.json").write_text(json.dumps(result, indent=2))
    print(table)
    print(f"\n{len(survivors)} survivor(s) (and mutants without tests): {WORK / 'survivors.txt'}")
    return result


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--sample", type=int, default=None,
                        help="run at most N behavioural mutants per module (seeded); default: "
                        f"all for {', '.join(FULL)}, {DEFAULT_SAMPLE} for the others")
    parser.add_argument("--workdir", default=str(WORK), help="scratch directory (default %(default)s)")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="only print the last run's report")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the workdir's generated mutants and test map (same modules)")
    args = parser.parse_args()
    WORK = Path(args.workdir).resolve()
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}")
    if args.report:
        plan = json.loads((WORK / "plan.json").read_text())
        report(plan)
        return
    ensure_mutmut()
    if not (args.reuse and (WORK / "mutants" / "mutmut-stats.json").exists()):
        write_workdir(modules)
    # 1. generate the mutants and record which tests reach which function: mutmut has no
    #    "generate only" command, so ask it to run a mutant that does not exist.
    if not (args.reuse and (WORK / "mutants" / "mutmut-stats.json").exists()):
        mutmut("run", "--max-children", "1", "attnbook.__generate_only__", check=False)
    if not (WORK / "mutants" / "mutmut-stats.json").exists():
        raise SystemExit(f"mutmut did not generate mutants; see {WORK}/mutmut.log")
    # 2. drop cosmetic mutants, sample
    plan = classify(modules, args.sample, args.seed)
    (WORK / "plan.json").write_text(json.dumps(plan))
    chosen = [e["name"] for m in plan.values() for e in m["entries"] if e["run"]]
    if args.reuse:  # run only what has no result yet
        done = {k for m in plan for k, code in load_meta(m).items() if code is not None}
        chosen = [name for name in chosen if name not in done]
    print(f"{sum(len(m['entries']) for m in plan.values())} mutants generated, "
          f"{len(chosen)} behavioural mutants to run", flush=True)
    # 3. run them
    if chosen:
        mutmut("run", "--max-children", str(args.max_children), *chosen, check=False)
    # 4. report
    report(plan)


if __name__ == "__main__":
    main()
