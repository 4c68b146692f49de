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
"""
from __future__ import annotations


def load_program(path):
    """The ExportedProgram saved at `path`, as it was before it was saved."""
    import torch

    ep = torch.export.load(str(path))
    drop_unused_outputs(ep)
    return ep


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
