"""cogarch.aot: the workspace cycle compiled ahead of time (torch.export + AOTInductor) gives the eager cycle's
results for the shapes it was made for, reads the workspace's live weights, and refuses other shapes, autograd and
the options it was not compiled with."""

import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from test_compile import assert_same, run, stream, workspace

from cogarch.aot import aot_compile_cycle

pytestmark = [pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                 reason="AOTInductor's CPU backend needs a C++ compiler"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")]

B = 3


@pytest.fixture(scope="module")
def compiled():
    """A cycle made without a package path, and what it left in the system's temporary folder."""
    ws, temp = workspace(), Path(tempfile.gettempdir())
    before = set(temp.glob("cogarch_cycle_*"))
    cycle = aot_compile_cycle(ws, ws.initial_state(B), torch.zeros(B, 1, ws.dim))
    return ws, cycle, set(temp.glob("cogarch_cycle_*")) - before


def test_the_aot_cycle_equals_the_eager_cycle(compiled):
    ws, cycle, left = compiled
    assert cycle.batch_size == B
    # no package path asked for: the package was a temporary file, deleted once loaded, and the cycle runs without it
    assert cycle.package_path is None and not left, left
    xs = stream(B, 40)  # events close and their boundaries are refined (the count read as a value)
    eager = run(ws, ws.cycle, xs, inplace=True)
    aot = run(ws, cycle, xs, inplace=True)
    assert_same(eager, aot)
    with torch.inference_mode():  # the output keeps its structure (named tuples, the candidates' sources)
        _, out = cycle(ws.initial_state(B), xs[0])
        _, ref = ws.cycle(ws.initial_state(B), xs[0], inplace=True)
    assert out.sources == ref.sources and out.selection.winners.shape == ref.selection.winners.shape


def test_the_aot_cycle_reads_the_workspaces_own_weights(compiled):
    ws, cycle, _ = compiled
    x = stream(B, 1)[0]
    try:
        with torch.no_grad():  # an in-place change, as an optimizer step makes
            for p in ws.motor.parameters():
                p.mul_(1.5)
        with torch.inference_mode():
            _, out = cycle(ws.initial_state(B), x)
            _, ref = ws.cycle(ws.initial_state(B), x, inplace=True)
        assert torch.allclose(out.logits, ref.logits, atol=1e-5)
    finally:
        with torch.no_grad():
            for p in ws.motor.parameters():
                p.div_(1.5)


def test_the_aot_cycle_refuses_what_it_was_not_compiled_for(compiled):
    ws, cycle, _ = compiled
    x = torch.zeros(B, 1, ws.dim)
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"sensory of shape \(4, 1, 16\).*batch size 3"):
            cycle(ws.initial_state(B), torch.zeros(B + 1, 1, ws.dim))
        with pytest.raises(ValueError, match="a state tensor of shape"):
            cycle(ws.initial_state(B + 1), x)
        with pytest.raises(ValueError, match="inplace=False"):
            cycle(ws.initial_state(B), x, inplace=False)
        with pytest.raises(ValueError, match="sensory_mask"):
            cycle(ws.initial_state(B), x, torch.ones(B, 1, dtype=torch.bool))
        with pytest.raises(ValueError, match="suppress"):
            cycle(ws.initial_state(B), x, suppress=torch.zeros(B, dtype=torch.bool))
    with pytest.raises(ValueError, match="inference only"):
        cycle(ws.initial_state(B), x)
    with pytest.raises(ValueError, match="sensory must be"):
        aot_compile_cycle(ws, ws.initial_state(B), torch.zeros(B, ws.dim))


def test_the_package_is_kept_where_it_was_asked_for(tmp_path):
    ws = workspace()
    path = tmp_path / "cycle.pt2"
    cycle = aot_compile_cycle(ws, ws.initial_state(1), torch.zeros(1, 1, ws.dim), package_path=path)
    assert path.is_file() and path.stat().st_size > 0 and cycle.package_path == str(path)
    x = stream(1, 1)[0]
    with torch.inference_mode():
        _, out = cycle(ws.initial_state(1), x)
        _, ref = ws.cycle(ws.initial_state(1), x, inplace=True)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5)
