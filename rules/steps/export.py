"""Step `export`: torch.export a model on its example inputs and save the program (.pt2)."""
from __future__ import annotations

import re

from pydantic import JsonValue

from ..lib.programs import save_program
from ..lib.stack_traces import line_free
from ..values import DimSpec, Spec, TensorSpec


class ExportConfig(Spec):
    entry: str
    kwargs: dict[str, JsonValue] = {}  # what the entry is called with
    init_seed: int = 0
    inputs: dict[str, TensorSpec]
    keyword_inputs: dict[str, TensorSpec] = {}
    dynamic_shapes: dict[str, dict[int, DimSpec]] = {}
    strict: bool = False
    weights: str | None = None  # workspace-relative
    draft_report: bool = False  # on failure, also run torch.export.draft_export and show its report


def dynamic_shapes(cfg: ExportConfig):
    """torch.export's dynamic_shapes: one Dim per name, shared wherever the name is used."""
    from torch.export import Dim

    if not cfg.dynamic_shapes:
        return None
    dims = {}
    for axes in cfg.dynamic_shapes.values():
        for spec in axes.values():
            dims.setdefault(spec.name, Dim(spec.name, min=spec.min, max=spec.max))
    return {
        name: {axis: dims[spec.name] for axis, spec in cfg.dynamic_shapes.get(name, {}).items()} or None
        for name in [*cfg.inputs, *cfg.keyword_inputs]
    }


def normalize(ep, workspace) -> None:
    """Make a program's bytes depend on the model's code alone, not on where or in which process it
    was built, nor on its comments and blank lines (which do not key the export): stack-trace paths
    become workspace-relative, the user's frames lose their line numbers (lib/stack_traces.py), and
    `from_node` provenance (which records id()s of graphs and builtins) is dropped."""
    import torch.fx

    prefix = str(workspace).rstrip("/") + "/"
    for gm in ep.graph_module.modules():
        if isinstance(gm, torch.fx.GraphModule):
            for node in gm.graph.nodes:
                node.meta.pop("from_node", None)
                if node.meta.get("stack_trace"):
                    node.meta["stack_trace"] = line_free(node.meta["stack_trace"].replace(prefix, ""))


def prepare(workspace, cfg: ExportConfig):
    """The eager model, its signature checked against the declared inputs, and those inputs."""
    from ..lib.modelio import check_signature, example_inputs, load_declared

    model = load_declared(workspace, cfg)
    check_signature(model, cfg.inputs, cfg.keyword_inputs)
    args, kwargs = example_inputs(cfg.inputs, cfg.keyword_inputs)
    return model, args, kwargs


def export_model(model, args, kwargs, cfg: ExportConfig, workspace, strict: bool | None = None):
    """torch.export with the declared dynamic shapes; a failure becomes a StepError that shows
    the user's line, hints, and (if asked) draft_export's report."""
    import torch

    from ..errors import StepError

    strict = cfg.strict if strict is None else strict
    try:
        return torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=dynamic_shapes(cfg), strict=strict)
    except Exception as err:  # torch raises many types; all mean "this model did not export"
        message = export_failure_message(err, cfg, workspace)
        if cfg.draft_report:
            message += "\n\n" + draft_report(model, args, kwargs, cfg, workspace)
        raise StepError(message) from err


def draft_report(model, args, kwargs, cfg: ExportConfig, workspace) -> str:
    """torch.export.draft_export's report of every issue it worked around, framework frames cut."""
    import torch

    try:
        ep = torch.export.draft_export(model, args, kwargs=kwargs, dynamic_shapes=dynamic_shapes(cfg))
    except Exception as err:  # draft_export crashes on some graphs plain export handles
        return f"draft_export report: draft_export itself failed ({type(err).__name__}: {str(err).splitlines()[0]})"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(ep._report)).replace(str(workspace).rstrip("/") + "/", "")
    keep = [l for l in text.splitlines() if "site-packages" not in l and not l.startswith("#")]
    return "draft_export report:\n" + "\n".join(keep).strip()


def _dynamo_user_lines(text: str, workspace) -> list[str]:
    """Strict export (Dynamo) puts the user's frames and its hints in the message text."""
    from ..errors import user_file

    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        match = re.match(r'File "([^"]+)"(.*)', line.strip())
        rel = user_file(match.group(1), workspace) if match else None  # not the toolchain's, nor a venv's
        if rel is not None:
            out.append(f'  File "{rel}"{match.group(2)}')
            if i + 1 < len(lines):
                out.append("      " + lines[i + 1].strip())
        elif line.strip().startswith("Hint:") and "torch.cond" in line:
            out.append("  " + line.strip())
    return out


def export_failure_message(err: Exception, cfg: ExportConfig, workspace) -> str:
    from ..errors import user_frames

    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    frames = user_frames(err, workspace)
    dynamo = [] if frames else _dynamo_user_lines(text, workspace)
    where = f"\n{frames}" if frames else ("\nIn your code:\n" + "\n".join(dynamo) if dynamo else "")
    hints = []
    if "GuardOnDataDependentSymNode" in type(err).__name__ + text or "data-dependent" in text.lower():
        hints.append("the model branches on tensor values; rewrite the branch with torch.cond")
        if not cfg.strict:
            hints.append("or set strict = True on the model: strict export names the source line")
    if "specialized it to be a constant" in text:
        hints.append("a dynamic dim was specialized: widen its example size or remove it from dynamic_shapes")
    if not cfg.draft_report:
        hints.append("set draft_export_report = True on the model to see torch.export.draft_export's report")
    hint = "".join(f"\n  hint: {h}" for h in hints)
    return f"torch.export failed ({type(err).__name__}): {first}{where}{hint}"


def record_eager_outputs(ctx, cfg: ExportConfig) -> None:
    """What the model computes on every case a check may run (lib/eager_outputs.py)."""
    from ..lib import eager_outputs
    from .verify import cases

    eager_outputs.record(ctx.workspace, cfg, cases(cfg), ctx.output_path(eager_outputs.FILE))


def run(ctx) -> dict:
    cfg: ExportConfig = ctx.config
    model, args, kwargs = prepare(ctx.workspace, cfg)
    ep = export_model(model, args, kwargs, cfg, ctx.workspace)
    normalize(ep, ctx.workspace)
    path = ctx.output_path("program.pt2")
    save_program(ep, path)
    record_eager_outputs(ctx, cfg)
    return {"nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function")}
