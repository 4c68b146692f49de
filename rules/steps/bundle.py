"""Step `bundle`: an ExecuTorch BundledProgram (.bpte) holding a .pte and its verification cases.

The cases are the ones `verify` runs (the example inputs, every dynamic dim at its min and at its
max; a case with the same shapes as an earlier one is bundled once), with the eager model's
outputs as the expected values, so a device lab can run the numeric check Linux cannot run for
Core ML, MPS and Vulkan programs. XNNPACK and portable programs are checked here, through
ExecuTorch's bundled-program runtime.

Expected values are computed in float64 and rounded to the output's dtype: float32 eager kernels
can differ in their last bits between CPUs (the vector kernels chosen for each), and the .bpte
must come out byte-identical on every machine. A model that does not run in float64 falls back
to float32 eager outputs, with a warning.

The bundled check is elementwise: |expected - actual| <= atol + rtol * |actual| (ExecuTorch's
`verify_method_outputs`). The artifact's tolerance gives both (`bundle_tolerance`):
- max_abs_error, when declared, already is an elementwise bound: atol = max_abs_error, rtol = 0.
- min_snr_db = S bounds the RMS error: RMS(actual - expected) <= e * RMS(expected), e = 10^(-S/20).
  An SNR allows the error to gather in few elements, and quantized programs do gather it (GPT-2's
  static int8 program at its longest sequence, where activations leave the calibrated range: one
  element 11 times the error's RMS; other zoo programs 2-5 times). So atol = 16 * e * RMS(expected)
  admits an error at the SNR bound concentrated in as few as 1 in 256 elements (16 = sqrt(256)),
  and rtol = e lets each element be off by that share of its own magnitude as well (quantization
  error grows with the value). Float programs (60 dB) get rtol 1e-3 and atol 0.016 x RMS, loose
  enough for float16 delegates (Core ML), as the 60 dB float tolerance is. From 24 dB up (16 e < 1) an output
  unrelated to the model's, off by about its RMS in most elements, exceeds the bound; int8 static
  (20 dB) and int4 (15 dB) programs are allowed errors near the outputs' own RMS, so on their
  own bounds the elementwise check catches gross failures only, and the SNR against the bundled
  expected outputs is the measure.
The reference scale is the RMS of every case's floating expected outputs together (one rtol/atol
pair, as a device lab's runner takes them); the values are in the metrics.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..values import Spec
from .export import ExportConfig
from .verify import (
    CASE_NAMES,
    VANISHING_CAUSE,
    VANISHING_FIX,
    VANISHING_RMS,
    CaseName,
    Tolerance,
)

METHOD = "forward"
PEAK_FACTOR = 16.0  # atol in RMS errors at the SNR bound: that error in 1 of 256 elements
# float64 outputs rounded to float32 stand in for float32 eager's only when they agree this well
FLOAT64_AGREEMENT_DB = 80.0
DEVICE_NOTE = "the bundled check needs the device: this backend does not run on Linux"


class BundleConfig(Spec):
    model: ExportConfig
    cases: list[CaseName] = list(CASE_NAMES)
    check: bool  # run the bundled check here (XNNPACK and portable programs)
    tolerance: Tolerance = Tolerance()  # the artifact's verify tolerance


@dataclass
class BundleCase:
    """One bundled case: the program's inputs in order (positional, then keyword) and the
    expected outputs (the eager model's, as pytree leaves)."""

    name: str
    inputs: list
    expected: list


# -- the expected values --------------------------------------------------------------------

def bundle_cases(model, cfg: BundleConfig) -> tuple[list[BundleCase], list[dict], str]:
    """The cases verify runs (repeated shapes once), with their eager outputs; the repeated
    cases; and the reference's precision ("float64" or "float32")."""
    from ..lib.modelio import example_inputs
    from .verify import cases

    selected, repeated, ran = [], [], {}
    for name, shapes in cases(cfg.model, cfg.cases):
        key = json.dumps(shapes, sort_keys=True)
        if key in ran:  # same shapes, same seeded inputs: verify does not run it again either
            repeated.append({"case": name, "same_as": ran[key]})
            continue
        ran[key] = name
        selected.append((name, shapes, example_inputs(cfg.model.inputs, cfg.model.keyword_inputs, shapes)))
    expected, precision = reference_outputs(model, [inputs for _, _, inputs in selected])
    bundled = [BundleCase(name, [_dense(t) for t in [*args, *kwargs.values()]], outputs)
               for (name, _, (args, kwargs)), outputs in zip(selected, expected)]
    return bundled, repeated, precision


def reference_outputs(model, inputs: list[tuple]) -> tuple[list[list], str]:
    """Eager outputs of each (args, kwargs), computed in float64 and rounded to float32 eager's
    dtypes, or float32 eager's own when the model does not run in float64 or disagrees there.
    Leaves the model in float64."""
    import torch

    from ..lib.runners import snr_db

    with torch.no_grad():
        single = [_leaves(model(*args, **kwargs)) for args, kwargs in inputs]
        try:
            model.double()
            double = [_leaves(model(*_to_double(args), **_to_double(kwargs))) for args, kwargs in inputs]
        except Exception:  # e.g. a float32 tensor made inside forward, a quantized tensor subclass
            return single, "float32"
    rounded = []
    for ref, wide in zip(single, double):
        if len(ref) != len(wide) or any(r.shape != w.shape for r, w in zip(ref, wide)):
            return single, "float32"
        rounded.append([_dense(w.to(r.dtype)) if r.is_floating_point() else r for r, w in zip(ref, wide)])
        floats = [(r, o) for r, o in zip(ref, rounded[-1]) if r.is_floating_point()]
        if floats and snr_db([r for r, _ in floats], [o for _, o in floats]) < FLOAT64_AGREEMENT_DB:
            return single, "float32"
    return rounded, "float64"


def _leaves(outputs) -> list:
    from torch.utils._pytree import tree_leaves

    return [_dense(t) for t in tree_leaves(outputs)]


def _to_double(tree):
    import torch
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t, tree)


def _dense(t):
    """A contiguous copy owning its storage: the runtime compares data in its default dim order."""
    import torch

    return t.detach().clone(memory_format=torch.contiguous_format)


# -- the tolerance --------------------------------------------------------------------------

def bundle_tolerance(tol: Tolerance, reference_rms: float) -> dict:
    """rtol and atol of the elementwise bundled check, from the artifact's tolerance (see the
    module's docstring), and how they were derived."""
    if tol.max_abs_error is not None:
        return {"rtol": 0.0, "atol": tol.max_abs_error, "basis": f"max_abs_error {tol.max_abs_error:g}"}
    snr = tol.min_snr_db
    if snr is None:  # tolerance() with no bound: hold the program to the float default
        from .verify import FLOAT_TOLERANCE

        snr = FLOAT_TOLERANCE.min_snr_db
    e = 10.0 ** (-snr / 20.0)
    return {"rtol": e, "atol": PEAK_FACTOR * e * reference_rms,
            "basis": f"min_snr_db {snr:g}: rtol 10^(-{snr:g}/20), atol {PEAK_FACTOR:g} x rtol x the expected "
                     f"outputs' RMS ({reference_rms:.3g})"}


# -- the .bpte ------------------------------------------------------------------------------

def make_bundle(program: bytes, cases: list[BundleCase]) -> bytes:
    """The .bpte of `program` (a .pte's bytes) with these cases for its forward method.
    Deterministic: the same program and tensors give the same bytes."""
    from executorch.devtools.bundled_program.config import (
        MethodTestCase,
        MethodTestSuite,
    )
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import (
        serialize_from_bundled_program_to_flatbuffer,
    )

    suite = MethodTestSuite(METHOD, [MethodTestCase(inputs=c.inputs, expected_outputs=c.expected) for c in cases])
    with tempfile.TemporaryDirectory() as tmp:  # BundledProgram reads a program from a file only
        path = Path(tmp) / "program.pte"
        path.write_bytes(program)
        return serialize_from_bundled_program_to_flatbuffer(BundledProgram(None, [suite], pte_file_path=str(path)))


def read_bundle(bpte: bytes) -> tuple[bytes, list[BundleCase]]:
    """The program and the forward method's cases stored in a .bpte (cases named by index).

    Read with flatbuffers' Table API and the schema's field order (bundled_program_schema.fbs):
    executorch 1.4.1's generated readers rebind their table classes to modules at import, so
    their vector accessors fail, and the flatc/JSON path takes a minute for 70 MB."""
    from flatbuffers.table import Table

    root = Table(bpte, int.from_bytes(bpte[:4], "little"))
    program = _bytes(root, 2)  # BundledProgram {version, method_test_suites, program}
    for suite in _tables(root, 1):  # BundledMethodTestSuite {method_name, test_cases}
        if suite.Offset(4) and suite.String(suite.Offset(4) + suite.Pos).decode() == METHOD:
            return program, [BundleCase(f"case {i}", [_value(v) for v in _tables(case, 0)],  # {inputs,
                                        [_value(v) for v in _tables(case, 1)])  # expected_outputs}
                             for i, case in enumerate(_tables(suite, 1))]
    return program, []


def _tables(table, field: int) -> list:
    """A vector of tables, the `field`-th field of `table` (fields are numbered as declared)."""
    from flatbuffers.table import Table

    offset = table.Offset(4 + 2 * field)
    if not offset:
        return []
    start = table.Vector(offset)
    return [Table(table.Bytes, table.Indirect(start + 4 * j)) for j in range(table.VectorLen(offset))]


def _bytes(table, field: int) -> bytes:
    offset = table.Offset(4 + 2 * field)
    if not offset:
        return b""
    start = table.Vector(offset)
    return bytes(table.Bytes[start:start + table.VectorLen(offset)])


def _value(value):
    """A bundled Value {val_type, val}: a torch tensor, or an int, bool or float."""
    import flatbuffers.number_types as n
    import torch
    from executorch.devtools.bundled_program.serialize.generated.bundled_program_flatbuffer.ValueUnion import (
        ValueUnion,
    )
    from executorch.exir.scalar_type import ScalarType
    from executorch.exir.tensor import get_scalar_type
    from flatbuffers.table import Table

    kind = value.Get(n.Uint8Flags, value.Pos + value.Offset(4)) if value.Offset(4) else ValueUnion.NONE
    val = Table(bytearray(), 0)
    value.Union(val, value.Offset(6))
    first = val.Offset(4) + val.Pos  # the value's first field: scalar type, or the scalar itself
    if kind == ValueUnion.Int:
        return val.Get(n.Int64Flags, first) if val.Offset(4) else 0
    if kind == ValueUnion.Bool:
        return bool(val.Get(n.BoolFlags, first)) if val.Offset(4) else False
    if kind == ValueUnion.Double:
        return val.Get(n.Float64Flags, first) if val.Offset(4) else 0.0
    # Tensor {scalar_type, sizes, data, dim_order}
    dtype = get_scalar_type(ScalarType(val.Get(n.Int8Flags, first) if val.Offset(4) else 0))
    sizes = [int(s) for s in val.GetVectorAsNumpy(n.Int32Flags, val.Offset(6))] if val.Offset(6) else []
    data = bytearray(_bytes(val, 2))
    order = list(_bytes(val, 3)) or list(range(len(sizes)))
    flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
    stored = flat.reshape([sizes[d] for d in order])  # laid out in dim order
    return stored.permute([order.index(d) for d in range(len(sizes))]).contiguous()


def fit_problems(program_path: Path, cases: list[BundleCase]) -> list[str]:
    """What would keep the cases from loading into the program's forward: input and output count,
    dtype and rank, and shapes beyond what its memory plan holds."""
    from executorch.exir.tensor import scalar_type_enum
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(str(program_path)).metadata(METHOD)
    problems = []
    for case in cases:
        if meta.num_inputs() != len(case.inputs) or meta.num_outputs() != len(case.expected):
            problems.append(f"{case.name}: forward takes {meta.num_inputs()} inputs and returns {meta.num_outputs()} "
                            f"outputs; the model gives {len(case.inputs)} and {len(case.expected)}")
            continue
        sides = [("input", i, t, meta.input_tensor_meta(i)) for i, t in enumerate(case.inputs)]
        sides += [("output", i, t, meta.output_tensor_meta(i)) for i, t in enumerate(case.expected)]
        for side, i, tensor, info in sides:
            planned = list(info.sizes())
            if info.dtype() != int(scalar_type_enum(tensor.dtype)):
                problems.append(f"{case.name}: {side} {i} is {tensor.dtype} in the model, scalar type {info.dtype()} "
                                "in the program")
            elif len(planned) != tensor.dim() or any(s > p for s, p in zip(tensor.shape, planned)):
                problems.append(f"{case.name}: {side} {i} has shape {list(tensor.shape)}; the program is planned "
                                f"for at most {planned}")
    return problems


# -- the bundled check ----------------------------------------------------------------------

def run_bundle(bpte: bytes, rtol: float, atol: float) -> list[dict]:
    """Run every bundled case through ExecuTorch's bundled-program runtime, which compares the
    outputs with the expected ones; where it reports a mismatch, measure it. One dict per case:
    passed, and max_abs_error and snr_db when the program ran, or error."""
    import executorch.kernels.quantized  # noqa: F401  quantized_decomposed kernels, as an app links them
    from executorch.extension.pybindings.portable_lib import (
        _load_bundled_program_from_buffer,
        _load_for_executorch_from_bundled_program,
    )

    from ..lib.runners import compare

    _, cases = read_bundle(bpte)
    bundle = _load_bundled_program_from_buffer(bpte)
    module = None
    results = []
    for index, case in enumerate(cases):
        result: dict = {"index": index}
        try:
            actual = bundle.verify_result_with_bundled_expected_output(METHOD, index, rtol, atol)
            result["passed"] = True
        except RuntimeError as err:  # says only "execution failed" or "mismatched" with a status
            result["passed"] = False
            result["runtime"] = str(err).strip()
            try:
                module = module or _load_for_executorch_from_bundled_program(bundle)
                actual = module.run_method(METHOD, case.inputs)
            except RuntimeError as again:
                result["error"] = f"the program failed to run the bundled inputs: {str(again).strip() or err}"
                results.append(result)
                continue
        actual = list(actual)
        try:
            result.update(compare(case.expected, actual))
        except ValueError as err:  # output count or shape
            result["error"] = str(err)
        if not result["passed"] and "error" not in result:
            pairs = enumerate(zip(case.expected, actual))
            result["outputs"] = [_output_excess(i, e, a, rtol, atol) for i, (e, a) in pairs]
        results.append(result)
    return results


def _output_excess(index: int, expected, actual, rtol: float, atol: float) -> dict:
    """How far one output is from passing |expected - actual| <= atol + rtol * |actual|."""
    import torch

    from ..lib.runners import max_abs_error

    if expected.dtype != actual.dtype:
        return {"output": index, "error": f"dtype {actual.dtype}, expected {expected.dtype}"}
    if not expected.is_floating_point():
        return {"output": index, "exact": bool(torch.equal(expected, actual))}
    e, a = expected.to(torch.float64), actual.to(torch.float64)
    diff = (e - a).abs()
    same = (e == a) | (torch.isnan(e) & torch.isnan(a))
    allowed = atol + rtol * a.abs()
    over = torch.where(same, torch.zeros_like(diff), torch.nan_to_num(diff - allowed, nan=math.inf)).reshape(-1)
    worst = int(over.argmax()) if over.numel() else 0
    return {"output": index, "max_abs_error": max_abs_error(expected, actual),
            "elements_over": int((over > 0).sum()), "elements": int(over.numel()),
            "worst_error": float(diff.reshape(-1)[worst]) if over.numel() else 0.0,
            "worst_allowed": float(allowed.reshape(-1)[worst]) if over.numel() else atol}


def check_bundle(bpte: bytes, rtol: float, atol: float, names: list[str] | None = None) -> list[str]:
    """One message per failed case: which case, which output, its error against the tolerance."""
    return failures(run_bundle(bpte, rtol, atol), rtol, atol, names)


def failures(results: list[dict], rtol: float, atol: float, names: list[str] | None = None) -> list[str]:
    out = []
    for r in results:
        if r["passed"]:
            continue
        name = f"case '{names[r['index']]}'" if names else f"case {r['index']}"
        if "error" in r:
            out.append(f"{name}: {r['error']}")
            continue
        bad = [o for o in r.get("outputs", []) if o.get("elements_over") or o.get("error") or o.get("exact") is False]
        for o in bad:
            if "error" in o:
                out.append(f"{name}, output {o['output']}: {o['error']}")
            elif "exact" in o:
                out.append(f"{name}, output {o['output']}: integer values differ from the expected ones")
            else:
                out.append(
                    f"{name}, output {o['output']}: max abs error {_num(o['max_abs_error'])} exceeds the tolerance "
                    f"(atol {atol:.3g} + rtol {rtol:.3g} x |actual|): {o['elements_over']} of {o['elements']} "
                    f"elements over, the worst off by {o['worst_error']:.3g} where {o['worst_allowed']:.3g} is allowed"
                )
        if not bad:  # the runtime's own verdict stands, though no element is over by this measure
            out.append(f"{name}: the runtime reports a mismatch ({r.get('runtime', 'no detail')}), max abs error "
                       f"{_num(r.get('max_abs_error'))} against atol {atol:.3g} + rtol {rtol:.3g} x |actual|")
    return out


def _num(value) -> str:
    return "inf (NaN or infinite outputs)" if value is None or not math.isfinite(value) else f"{value:.3g}"


# -- the step -------------------------------------------------------------------------------

def run(ctx) -> dict:
    from ..errors import StepError
    from ..lib.modelio import load_declared
    from .verify import _vanishing, reference_scale

    cfg: BundleConfig = ctx.config
    program_path = ctx.input_path("program")
    model = load_declared(ctx.workspace, cfg.model)
    cases, repeated, precision = bundle_cases(model, cfg)
    problems = fit_problems(program_path, cases)
    if problems:
        raise StepError("the verification cases do not fit the program:\n  " + "\n  ".join(problems))
    scale = reference_scale([t for c in cases for t in c.expected if t.is_floating_point()])
    tol = bundle_tolerance(cfg.tolerance, scale["reference_rms"])
    bpte = make_bundle(program_path.read_bytes(), cases)
    ctx.output_path("program.bpte").write_bytes(bpte)

    names = [*cfg.model.inputs, *cfg.model.keyword_inputs]  # the program's inputs, in order
    report = {
        "cases": [{"name": c.name, "inputs": dict(zip(names, (list(t.shape) for t in c.inputs)))} for c in cases],
        "checked": cfg.check, "passed": None, "rtol": tol["rtol"], "atol": tol["atol"], "max_abs_error": None,
        "tolerance_basis": tol["basis"], "reference": precision, **scale,
    }
    if repeated:
        report["repeated"] = repeated
    if cfg.check:
        results = run_bundle(bpte, tol["rtol"], tol["atol"])
        for entry, result in zip(report["cases"], results):
            entry.update({k: result[k] for k in ("passed", "max_abs_error", "snr_db", "error") if k in result})
        errors = [r.get("max_abs_error") for r in results]
        report["max_abs_error"] = None if None in errors else max(errors, default=0.0)
        failed = failures(results, tol["rtol"], tol["atol"], [c.name for c in cases])
        if failed:
            raise StepError(f"the bundled check failed in ExecuTorch's bundled-program runtime ({tol['basis']}):\n  "
                            + "\n  ".join(failed))
        report["passed"] = True
    else:
        report["note"] = DEVICE_NOTE

    warnings = []
    if precision == "float32":
        warnings.append("the bundle's expected outputs come from float32 eager: the model does not run in float64 (or "
                        "gives other values there), and float32 kernels differ in their last bits between CPUs, so "
                        "this .bpte may not be byte-identical when built on another machine")
    if any(t.is_floating_point() for c in cases for t in c.expected) and scale["reference_rms"] < VANISHING_RMS:
        warnings.append(f"the bundle's expected outputs are {_vanishing(scale)}: {VANISHING_CAUSE}, too small for a "
                        f"meaningful bundled check (float16 and int8 programs lose them entirely); {VANISHING_FIX}")
    for warning in warnings:
        ctx.warn(warning)
    return {"bundle": report}
