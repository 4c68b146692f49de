"""An .mlpackage's structure against its model's declaration: Core ML cannot predict on Linux, so
verify checks what it can read (inputs, shapes, ranges) without running it."""
from __future__ import annotations


def mlpackage_structure(ctx, cfg) -> dict:
    import coremltools as ct

    from ..errors import StepError

    spec = ct.models.MLModel(str(ctx.input_path("artifact")), skip_model_load=True).get_spec()
    declared = {**cfg.model.inputs, **cfg.model.keyword_inputs}
    inputs = {i.name: i.type.multiArrayType for i in spec.description.input}
    problems = []
    if list(inputs) != list(declared):
        problems.append(f"inputs are {list(inputs)}, the model declares {list(declared)}")
    for name, tensor in declared.items():
        if name not in inputs:
            continue
        array, dynamic = inputs[name], cfg.model.dynamic_shapes.get(name, {})
        ranges = list(array.shapeRange.sizeRanges)
        for axis, size in enumerate(tensor.shape):
            if axis in dynamic:
                got = (ranges[axis].lowerBound, ranges[axis].upperBound) if axis < len(ranges) else None
                if got != (dynamic[axis].min, dynamic[axis].max):
                    problems.append(f"input '{name}' axis {axis} has range {got}, dim '{dynamic[axis].name}' declares "
                                    f"({dynamic[axis].min}, {dynamic[axis].max})")
            elif axis >= len(array.shape) or array.shape[axis] != size:
                problems.append(f"input '{name}' has shape {list(array.shape)}, the model declares {tensor.shape}")
                break
    if problems:
        raise StepError("structural check failed:\n  " + "\n  ".join(problems))
    return {"numeric": False, "format": "mlpackage", "note": "a numeric check needs macOS: Core ML cannot predict on Linux",
            "inputs": list(inputs), "outputs": [o.name for o in spec.description.output]}
