"""cogarch.runtime: process-wide settings the CLI applies (each check runs in a fresh process)."""

import subprocess
import sys
import textwrap

import pytest

from cogarch.runtime import keep_freed_memory

# Three 8 MiB blocks allocated, written and freed, six times; prints the page faults of each round.
ROUNDS = textwrap.dedent("""
    import ctypes, resource, sys
    if sys.argv[1] == "keep":
        from cogarch.runtime import keep_freed_memory
        assert keep_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    n = 8 * 1024 * 1024
    def round_faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(n) for _ in range(3)]
        for p in blocks:
            ctypes.memset(p, 1, n)
        for p in blocks:
            libc.free(p)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(*[round_faults() for _ in range(6)])
""")


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_reused_without_page_faults():
    pages = 3 * 8 * 1024 * 1024 // 4096
    default, kept = _faults("default"), _faults("keep")
    # glibc's defaults give the freed 24 MiB back to the system each round, and take it again (a fault per page)
    assert min(default[1:]) > pages // 2, default
    # kept: the first round grows the heap, the later ones reuse it
    assert kept[0] > pages // 2 and max(kept[1:]) < 50, kept


def test_keep_freed_memory_refuses_a_threshold_glibc_would_not_take():
    for bad in (0, 64 * 1024 * 1024, 1.5):
        with pytest.raises(ValueError, match=r"mmap_threshold=.* is out of range; allowed: integer bytes in 1\.\."):
            keep_freed_memory(bad)
