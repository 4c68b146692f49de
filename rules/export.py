"""Step `export`: torch.export a model on its example inputs and save the program (.pt2)."""
from __future__ import annotations

from .specs import DimSpec, Spec, TensorSpec


class ExportConfig(Spec):
    entry: str
    init_seed: int = 0
    inputs: dict[str, TensorSpec]
    keyword_inputs: dict[str, TensorSpec] = {}
    dynamic_shapes: dict[str, dict[int, DimSpec]] = {}
    strict: bool = False
    weights: str | None = None  # workspace-relative


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


def _relative_stack_traces(ep, workspace: str) -> None:
    """Saved programs carry source paths in node metadata: make them workspace-relative."""
    import torch.fx

    prefix = workspace.rstrip("/") + "/"
    for gm in ep.graph_module.modules():
        if isinstance(gm, torch.fx.GraphModule):
            for node in gm.graph.nodes:
                if node.meta.get("stack_trace"):
                    node.meta["stack_trace"] = node.meta["stack_trace"].replace(prefix, "")


def export_program(ctx, cfg: ExportConfig):
    import torch

    from .errors import StepError
    from .modelio import check_signature, example_inputs, load_model

    model = load_model(ctx.workspace, cfg.entry, cfg.init_seed, cfg.weights)
    check_signature(model, cfg.inputs, cfg.keyword_inputs)
    args, kwargs = example_inputs(cfg.inputs, cfg.keyword_inputs)
    try:
        return torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=dynamic_shapes(cfg), strict=cfg.strict)
    except Exception as err:  # torch raises many types; all mean "this model did not export"
        raise StepError(export_failure_message(err, cfg, ctx.workspace)) from err


def export_failure_message(err: Exception, cfg: ExportConfig, workspace) -> str:
    from .errors import user_frames

    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    frames = user_frames(err, workspace)
    where = f"\n{frames}" if frames else ""
    hints = []
    if "GuardOnDataDependentSymNode" in type(err).__name__ + text or "data-dependent" in text.lower():
        hints.append("the model branches on tensor values; rewrite the branch with torch.cond")
        if not cfg.strict:
            hints.append("or set strict = True on the model: strict export names the source line")
    if "specialized it to be a constant" in text:
        hints.append("a dynamic dim was specialized: widen its example size or remove it from dynamic_shapes")
    hint = "".join(f"\n  hint: {h}" for h in hints)
    return f"torch.export failed ({type(err).__name__}): {first}{where}{hint}"


def run(ctx) -> dict:
    import torch

    cfg = ExportConfig.model_validate(ctx.config)
    ep = export_program(ctx, cfg)
    _relative_stack_traces(ep, str(ctx.workspace))
    path = ctx.output_path("program.pt2")
    torch.export.save(ep, str(path))
    return {"nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function")}
