"""The allocator setting made at ``import attnbook``: what it sets, when it steps aside, and
that it changes where memory comes from (page faults) but never a number."""

import json
import subprocess
import sys
import textwrap

import pytest

from attnbook import _malloc


class FakeLibc:
    def __init__(self, result=1):
        self.calls, self.result = [], result

    def mallopt(self, option, value):
        self.calls.append((option, value))
        return self.result


@pytest.fixture
def fake(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(_malloc, "_glibc", lambda: libc)
    monkeypatch.setattr(_malloc, "applied", {})
    return libc


def test_sets_both_thresholds_with_glibcs_option_numbers(fake):
    done = _malloc.configure({})
    assert fake.calls == [(-3, 32 * 2**20), (-1, 256 * 2**20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert done == {"M_MMAP_THRESHOLD": 32 * 2**20, "M_TRIM_THRESHOLD": 256 * 2**20} == _malloc.applied


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_opt_out_sets_nothing(fake, value):
    assert _malloc.configure({"ATTNBOOK_NO_MALLOPT": value}) == {}
    assert fake.calls == []


@pytest.mark.parametrize("value", ["", "0"])
def test_an_empty_or_zero_opt_out_does_not_opt_out(fake, value):
    assert len(_malloc.configure({"ATTNBOOK_NO_MALLOPT": value})) == 2


def test_a_users_own_glibc_settings_win(fake):
    assert _malloc.configure({"MALLOC_TRIM_THRESHOLD_": "1000"}) == {"M_MMAP_THRESHOLD": 32 * 2**20}
    fake.calls.clear()
    assert _malloc.configure({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}) == {
        "M_TRIM_THRESHOLD": 256 * 2**20}
    assert fake.calls == [(-1, 256 * 2**20)]


def test_nothing_happens_without_glibc(monkeypatch):
    monkeypatch.setattr(_malloc, "_glibc", lambda: None)
    assert _malloc.configure({}) == {}


@pytest.mark.parametrize("platform", ["darwin", "win32", "emscripten"])
def test_no_c_library_is_even_looked_for_off_linux(monkeypatch, platform):
    monkeypatch.setattr(_malloc.sys, "platform", platform)
    assert _malloc._glibc() is None


def test_a_refused_setting_is_not_reported(fake):
    fake.result = 0
    assert _malloc.configure({}) == {}


# ----------------------------------------------------------- in a fresh process, for real

needs_glibc = pytest.mark.skipif(_malloc._glibc() is None, reason="mallopt is glibc's; elsewhere a no-op")

CHILD = textwrap.dedent("""
    import hashlib, json, resource
    import numpy as np
    import attnbook as ab
    from attnbook import _malloc

    def step():  # the autograd's pattern: keep a few MiB alive, then free them all
        kept = [np.ones(2**17) for _ in range(16)]  # 16 arrays of 1 MiB
        return sum(float(a[0]) for a in kept)

    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

    rng = np.random.default_rng(0)
    x = ab.Tensor(rng.standard_normal((4, 6, 8)), requires_grad=True)
    W = [ab.Tensor(rng.standard_normal((8, 8)), requires_grad=True) for _ in range(4)]
    out, _ = ab.multi_head_attention(x, x, x, *W, n_heads=2, mask=ab.causal_mask(6))
    (out * rng.standard_normal(out.shape)).sum().backward()
    digest = hashlib.sha256(b"".join(t.grad.tobytes() for t in [x, *W])).hexdigest()
    print(json.dumps({"applied": _malloc.applied, "faults": faults, "digest": digest}))
""")


def run_child(env):
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@needs_glibc
def test_import_attnbook_keeps_freed_memory_mapped_and_changes_no_number():
    default = run_child({})  # an empty environment, as a reader's fresh Python
    opted_out = run_child({"ATTNBOOK_NO_MALLOPT": "1"})
    assert default["applied"] == {"M_MMAP_THRESHOLD": 32 * 2**20, "M_TRIM_THRESHOLD": 256 * 2**20}
    assert opted_out["applied"] == {}
    # glibc's defaults return the 16 MiB to the system after every step and fault it in again
    # (4096 pages); with the thresholds raised, the memory stays mapped.
    assert opted_out["faults"] > 1000
    assert default["faults"] < 100
    assert default["digest"] == opted_out["digest"]
