"""The workspace cycle compiled ahead of time: ``torch.export`` captures it once, AOTInductor compiles the graph
into a shared library, and each call runs that library directly.

``cogarch.workspace.compile_cycle`` (``torch.compile``) checks dynamo's guards on every call (some 640
checks over the state's tensors and the modules' attributes) and goes through AOTAutograd's Python wrapper before
its C++ runs. An ahead-of-time cycle does neither: it is made for one set of input shapes and takes the state as a
flat list of tensors, so a call is a shape check in Python and the library's run. The price is what the guards
were for: it serves one batch size, one number of sensory items and inference only, which :class:`AotCycle` checks
on each call (and refuses anything else by name). The compiled code is the same (inductor's C++ kernels, the
episodic refinement reading its count of closing streams as a value), and so are the results
(tests/test_aot.py).

The package reads the workspace's own parameter and buffer tensors (handed to it as user-managed constants), so a
change made in place to the weights (an optimizer step, ``load_state_dict``) is what the next call uses; a parameter
replaced by another tensor object is not (the cycle keeps the one it was given).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

__all__ = ["AotCycle", "aot_compile_cycle"]


class _Flat(nn.Module):
    """``workspace.cycle`` on flat tensors: (sensory, [sensory_mask], *state leaves) -> the tensors of (new state,
    output), in pytree order (the output's non-tensor leaves, the candidates' source names, are constants)."""

    def __init__(self, workspace: nn.Module, state_spec, masked: bool, structured: bool = False):
        super().__init__()
        self.workspace, self.state_spec, self.masked, self.structured = workspace, state_spec, masked, structured

    def forward(self, sensory: Tensor, *rest: Tensor):
        mask, leaves = (rest[0], rest[1:]) if self.masked else (None, rest)
        result = self.workspace.cycle(tree_unflatten(list(leaves), self.state_spec), sensory, mask, inplace=True)
        if self.structured:
            return result
        return tuple(t for t in tree_leaves(result) if isinstance(t, Tensor))


class AotCycle:
    """A workspace's cycle compiled ahead of time for fixed shapes (see the module docstring); made by
    :func:`aot_compile_cycle`.

    Call it as ``Workspace.cycle`` with ``inplace=True``: ``cycle(state, sensory, sensory_mask=None)`` ->
    ``(new state, CycleOutput)``. The given state is consumed (its tensors are written in place). The state, the
    sensory items (and the mask, if it was compiled with one) must have the shapes and dtypes it was compiled for,
    and autograd must be off (``torch.inference_mode()`` or ``torch.no_grad()``); anything else raises ValueError.
    ``package_path`` is the AOTInductor package (.pt2) it was loaded from, when one was asked for (else None: the
    package was a temporary file, deleted once loaded; the loaded cycle does not need it)."""

    def __init__(self, loader, package_path: str | None, in_shapes: list, masked: bool, state_spec, out_spec,
                 out_leaves: list, keep: list[int], constants: list[Tensor]):
        self._loader, self.package_path = loader, package_path
        self._constants = constants  # (the package reads them by address: they must outlive it)
        self._in_shapes, self._masked, self._state_spec = in_shapes, masked, state_spec
        self._out_spec, self._out_leaves, self._keep = out_spec, out_leaves, keep

    @property
    def batch_size(self) -> int:
        return self._in_shapes[0][0][0]

    def __call__(self, state, sensory: Tensor, sensory_mask: Tensor | None = None, inplace: bool = True,
                 suppress: Tensor | None = None) -> tuple[Any, Any]:
        if not inplace:
            raise ValueError("inplace=False is not allowed: an AotCycle writes the given state in place (it was "
                             "compiled with inplace=True); allowed: inplace=True")
        if suppress is not None:
            raise ValueError("suppress is not allowed: an AotCycle runs the cycle it was compiled for; use "
                             "Workspace.cycle for counterfactual replays")
        if torch.is_grad_enabled():
            raise ValueError("an AotCycle runs inference only: call it under torch.inference_mode() or "
                             "torch.no_grad()")
        if (sensory_mask is not None) != self._masked:
            raise ValueError(f"sensory_mask={'a tensor' if sensory_mask is not None else None} is not allowed: "
                             f"this cycle was compiled {'with' if self._masked else 'without'} one")
        leaves, spec = tree_flatten(state)
        if spec != self._state_spec:
            raise ValueError("the state's structure differs from the one this cycle was compiled for (another "
                             "composition of memories?)")
        inputs = [sensory, sensory_mask, *leaves] if self._masked else [sensory, *leaves]
        for i, (t, (shape, dtype)) in enumerate(zip(inputs, self._in_shapes)):
            if not isinstance(t, Tensor) or t.shape != shape or t.dtype != dtype:
                what = "sensory" if i == 0 else "sensory_mask" if self._masked and i == 1 else "a state tensor"
                got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{what} of shape {got} is not allowed: this cycle was compiled for "
                                 f"{tuple(shape)} {dtype} (batch size {self.batch_size}); compile another one "
                                 "for other shapes")
        out_leaves = list(self._out_leaves)  # the output's constants, with its tensors filled in below
        for i, t in zip(self._keep, self._loader.boxed_run(inputs)):
            out_leaves[i] = t
        return tree_unflatten(out_leaves, self._out_spec)


def aot_compile_cycle(workspace: nn.Module, state, sensory: Tensor, sensory_mask: Tensor | None = None,
                      package_path: str | os.PathLike | None = None) -> AotCycle:
    """Compile ``workspace.cycle`` ahead of time for the shapes of ``state``, ``sensory`` (B, n, d) and
    ``sensory_mask`` (B, n) bool (or none), e.g. ``workspace.initial_state(B)`` and ``torch.zeros(B, 1, dim)``;
    their values are not changed. Returns an :class:`AotCycle`. Writes the package to ``package_path`` when given
    (``cycle.package_path``), else to a temporary folder deleted once the package is loaded. Takes as long as
    torch.compile's first call (tens of seconds: the C++ compile). Needs a C++ compiler."""
    leaves, state_spec = tree_flatten(state)
    if not all(isinstance(t, Tensor) for t in leaves):
        raise ValueError("the state must hold only tensors (and None)")
    if sensory.dim() != 3:
        raise ValueError(f"sensory must be (batch, items, dim), got shape {tuple(sensory.shape)}")
    masked = sensory_mask is not None
    example = [sensory, sensory_mask, *leaves] if masked else [sensory, *leaves]
    example = [t.detach().clone() for t in example]  # (the cycle writes the state leaves in place)
    with tempfile.TemporaryDirectory(prefix="cogarch_cycle_") as folder:
        path = os.path.join(folder, "cycle.pt2") if package_path is None else os.fspath(package_path)
        with torch.no_grad(), torch._dynamo.config.patch(capture_scalar_outputs=True):
            # The output's structure (named tuples, the source names), from the exported program run once, then the
            # flat program that the package holds.
            structured = torch.export.export(_Flat(workspace, state_spec, masked, structured=True), tuple(example),
                                             strict=True)
            out_leaves, out_spec = tree_flatten(structured.module()(*[t.clone() for t in example]))
            keep = [i for i, t in enumerate(out_leaves) if isinstance(t, Tensor)]
            flat = torch.export.export(_Flat(workspace, state_spec, masked), tuple(example), strict=True)
            # (small weights would otherwise be written into the C++ code as numbers, out of reach of later changes)
            torch._inductor.aoti_compile_and_package(flat, package_path=path,
                                                     inductor_configs={"always_keep_tensor_constants": True})
        compiled = torch._inductor.aoti_load_package(path)
    # the weights: the workspace's own tensors, so that in-place changes to them reach the package
    wrapper = _Flat(workspace, state_spec, masked)
    own = {**dict(wrapper.named_parameters()), **dict(wrapper.named_buffers())}
    names = compiled.get_constant_fqns()
    # (the others are tensors the cycle's code makes from literals, _tensor_constant<i>, which the package keeps)
    foreign = [n for n in names if n not in own and not n.startswith("_tensor_constant")]
    if foreign:  # e.g. a folded product of weights, which in-place changes to the weights would not reach
        raise RuntimeError(f"the package holds constants that are not the workspace's tensors: {foreign[:5]}")
    constants = {n: own[n] for n in names if n in own}
    compiled.load_constants(constants, check_full_update=False, user_managed=True)
    out_leaves = [None if isinstance(t, Tensor) else t for t in out_leaves]
    return AotCycle(compiled.loader, None if package_path is None else path, [(t.shape, t.dtype) for t in example],
                    masked, state_spec, out_spec, out_leaves, keep, list(constants.values()))
