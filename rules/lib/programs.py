"""Reading and writing exported programs (.pt2): the one place steps load a program from the cache.

A program read back from a file must behave in every later step exactly as the program that was
saved would have: whatever torch.export's round trip changes is undone here, once, for every step.

What the round trip changes (torch 2.13, compared node by node before save and after load):
- The serializer names every output of a multi-output op, used or not (`<op>_unused_<i>`), and
  the loader creates a `getitem` node for each. The original graph has getitems only for the
  outputs it uses (FX emits none for the others). Converters that walk every node then meet
  outputs they cannot bind: coremltools 9.0 fails on the unused mean/invstd outputs of
  `_native_batch_norm_legit_no_training` ("does not handle/bind value at index 1"), which every
  BatchNorm CNN has. `load_program` erases them again.
- Metadata only a tracer fills in (`tensor_meta`, `original_aten`, `seq_nr`, `torch_fn`, `desc`)
  is not saved, and the output node gains a `val`; views' example values come back with storage
  offset 0 (so re-saving GPT-2 changes those offsets in the file); tied weights come back in
  another `state_dict` order. Every step that reads values re-traces the program, and none reads
  the rest, so these are left as they are: a decomposed program saves the same bytes either way.

Every step that decomposes a program to core ATen (ours or ExecuTorch's lowering) does it inside
`sound_decompositions()`, which corrects one decomposition of torch 2.13 (see there).
"""
from __future__ import annotations

from contextlib import contextmanager

# Loading a .pt2 unpickles parts of it, so a program is loaded only from bytes that match the
# digest its action-cache record names: the worker registers each input's digest here, and the
# bytes hashed are the bytes loaded (no window for the file to change in between).
_expected: dict[str, str] = {}


def expect_inputs(inputs: dict) -> None:
    """The current action's inputs (StepRequest.inputs), set by the worker per action."""
    _expected.clear()
    _expected.update({i.path: i.digest for i in inputs.values() if hasattr(i, "digest") and not i.is_tree})


def load_program(path):
    """The ExportedProgram saved at `path`, as it was before it was saved."""
    import hashlib
    import io

    import torch

    from ..errors import StepError

    data = open(path, "rb").read()
    expected = _expected.get(str(path))
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise StepError(f"refusing to load {path}: its sha256 is {hashlib.sha256(data).hexdigest()}, but the action "
                        f"cache names {expected} (the file changed after the engine verified it); build again")
    import_pytree_types(data)
    ep = torch.export.load(io.BytesIO(data))
    drop_unused_outputs(ep)
    return ep


def import_pytree_types(data: bytes) -> list[str]:
    """Import the modules of the pytree types a saved program's specs name but torch does not know yet;
    the modules imported.

    A program's input and output specs name their container types (a transformers ModelOutput, say),
    and torch can read them back only once that type is registered with pytree, which happens when
    its module is imported. The worker that exported the program had imported it; a worker that did
    not (another one at -j 2, or any worker after an export cache hit) would fail to load the program.
    """
    import importlib
    import io
    import json
    import zipfile

    from torch.utils import _pytree as pytree

    def spec_types(node, found: set[str]) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and "children_spec" in node:
                found.add(node["type"])
            for value in node.values():
                spec_types(value, found)
        elif isinstance(node, list):
            for value in node:
                spec_types(value, found)
        elif isinstance(node, str) and node.startswith("[") and '"children_spec"' in node:
            try:  # a treespec is saved as a JSON string inside the program's JSON
                spec_types(json.loads(node), found)
            except ValueError:
                pass

    found: set[str] = set()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if "/models/" in name and name.endswith(".json"):
                spec_types(json.loads(archive.read(name)), found)
    imported = []
    for type_name in sorted(found - set(pytree.SERIALIZED_TYPE_TO_PYTHON_TYPE)):
        module = type_name
        while "." in module:  # a.b.Outer.Inner: the longest prefix that imports
            module = module.rsplit(".", 1)[0]
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            imported.append(module)
            break
    return imported


def save_program(ep, path) -> None:
    import torch

    torch.export.save(ep, str(path))


def drop_unused_outputs(ep) -> int:
    """Erase the `getitem` nodes nothing reads (in every graph, nested ones too); the number erased.
    Saving writes the same bytes with or without them: the serializer folds getitems into their op."""
    import operator

    import torch.fx

    erased = 0
    for gm in ep.graph_module.modules():
        if not isinstance(gm, torch.fx.GraphModule):
            continue
        before = erased
        # Reversed: a getitem of a list output is read only by the getitems after it.
        for node in reversed(gm.graph.nodes):
            if node.op == "call_function" and node.target is operator.getitem and not node.users:
                gm.graph.erase_node(node)
                erased += 1
        if erased > before:
            gm.recompile()
    return erased


@contextmanager
def fork_safe():
    """Run torch code in a process that forks afterwards (a fork server's warm-up), leaving no thread
    behind: a child inherits a thread's locks but not the thread, and waits on them forever. So one
    intra-op thread (OpenMP's team is made at the first parallel region, and libgomp's does not
    survive a fork) and no tqdm monitor thread (the FX interpreter makes a disabled progress bar, and
    tqdm starts its monitor for any bar)."""
    import torch
    import tqdm

    threads, interval = torch.get_num_threads(), tqdm.tqdm.monitor_interval
    torch.set_num_threads(1)
    tqdm.tqdm.monitor_interval = 0
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        tqdm.tqdm.monitor_interval = interval


@contextmanager
def shared_provenance():
    """Within it, copying a node's metadata shares its provenance (`meta["from_node"]`) instead of
    deep-copying it.

    torch 2.13 records, on every node a pass creates, the chain of nodes it came from (NodeSource),
    and each new record deep-copies the whole chain before it, so the copies grow with the number
    of passes: about 10% of lowering MobileNetV2 to XNNPACK, and half of to_executorch(). A
    NodeSource is never changed once made (it caches its own to_dict()), so sharing one is the same
    as copying it, and the .pte comes out byte for byte the same (tests/steps/test_lowering.py)."""
    from torch.fx.traceback import NodeSource

    NodeSource.__deepcopy__ = lambda self, memo: self
    try:
        yield
    finally:
        del NodeSource.__deepcopy__


@contextmanager
def sound_decompositions():
    """Within it, every decomposition table built (torch.export's default_decompositions(),
    ExecuTorch's lowering) decomposes CPU scaled_dot_product_attention into a result laid out as
    the op itself lays it out.

    torch 2.13's decomposition of `_scaled_dot_product_flash_attention_for_cpu` (what
    scaled_dot_product_attention runs on CPU) lays its result out as [seq, batch, heads, dim], as
    nn.MultiheadAttention's query is; the op's meta, which export traced, lays it out as its query
    (`empty_like(query)`), [batch, seq, heads, dim] in transformers. Export drops the `.contiguous()`
    after `transpose(1, 2)` as a no-op there and records the later `.view()`s as valid; decomposed,
    the tensor is not contiguous and the first view fails ("Cannot view a tensor with shape
    [2, s, 32] and strides (32, 64, 1)": GPT-2's Conv1D, BERT with torchao weight-only linears), at
    batch >= 2. Where both layouts agree, torch's own decomposition runs, so the graph is the same."""
    import torch
    from torch._decomp import global_decomposition_table

    # The registry is read whenever a table is built, so this reaches tables built inside ExecuTorch.
    registry = global_decomposition_table["post_autograd"]
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
    torchs = registry[op]
    registry[op] = _flash_attention_for_cpu_as_traced
    try:
        yield
    finally:
        registry[op] = torchs


def _flash_attention_for_cpu_as_traced(query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
    """torch's decomposition of the op, with the result laid out in memory as its meta lays it out."""
    import torch
    from torch._decomp.decompositions import (
        scaled_dot_product_flash_attention_for_cpu as torchs,
    )
    from torch._prims_common import compute_elementwise_output_logical_to_physical_perm
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    order, _ = compute_elementwise_output_logical_to_physical_perm(query)  # empty_like(query)'s layout
    mine, theirs = _strides(query.shape, order), _strides(query.shape, [2, 0, 1, 3])
    if all(statically_known_true(n == 1) or statically_known_true(a == b) for n, a, b in zip(query.shape, mine, theirs)):
        return torchs(query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    output, attn = torch.ops.aten._scaled_dot_product_attention_math.default(
        query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, dropout_mask=None,
        scale=scale, enable_gqa=query.size(1) != key.size(1),
    )
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return output.permute(order).contiguous().permute(inverse), attn


def _strides(shape, order) -> list:
    """The strides of a dense tensor of `shape` whose dims lie in memory in `order`, outermost first."""
    from torch._prims_common import make_contiguous_strides_for

    physical = make_contiguous_strides_for([shape[d] for d in order])
    strides = [None] * len(shape)
    for position, dim in enumerate(order):
        strides[dim] = physical[position]
    return strides
