"""Failures of the toolchain itself (not of the user's code), explained in one message.

When torch, executorch, coremltools or onnx raise inside a step, the user gets: the step, the
package that failed, the op or node the error names, the line of their model it comes from
(where the error records it), the cause and the nearest workaround this build knows. The
traceback stays in the action's log.

KNOWN holds one entry per failure seen with this toolchain (torch 2.13, executorch 1.4.1,
coremltools 9.0): a pattern of the error's text, a sentence of cause and the workaround. A
failure that matches none still gets the step's usual workaround (STEP_WORKAROUNDS).
"""
from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import user_file
from .lib.stack_traces import find_line, frames


@dataclass(frozen=True)
class KnownFailure:
    pattern: str  # regex searched in the error's text (its cause chain, and the log's error lines)
    cause: str
    workaround: str


COREML_VIA_EXECUTORCH = ("executorch_program(backends = [coreml()]) delegates what Core ML can run and leaves "
                         "the rest to ExecuTorch's portable kernels")

KNOWN: tuple[KnownFailure, ...] = (
    KnownFailure(
        r"Unsupported fx node \S+, kind \S+|PyTorch convert function for op '[^']+' not implemented",
        "coremltools 9.0 has no conversion for this op",
        COREML_VIA_EXECUTORCH,
    ),
    KnownFailure(
        r"coremltools lowering does not handle/bind value at index \d+",
        "coremltools 9.0 cannot bind an output of a multi-output op (such as the unused mean and variance "
        "outputs of batch norm) that the program reads or keeps",
        "executorch_program(backends = [coreml()]) converts the same model through ExecuTorch, whose lowering "
        "re-traces the program (dropping unused outputs) before Core ML sees it",
    ),
    KnownFailure(
        r"Cannot view a tensor with shape .* as a tensor with shape",
        "a core-ATen decomposition laid a tensor out in memory unlike the op it replaced, so a later .view() "
        "that was valid when the model was exported finds it non-contiguous (torch 2.13 did this for "
        "scaled_dot_product_attention, which modelbuild corrects: rules/lib/programs.py sound_decompositions)",
        "use .reshape() for that .view() in the model; a pt2_program can keep the op that makes the tensor whole "
        'with keep_ops = ["<the op>"]',
    ),
    KnownFailure(
        r"is not in Core ATen opset",
        "ExecuTorch programs hold core-ATen ops only (and what a delegate takes whole); torch 2.13 has no core-ATen "
        "decomposition of this op and no backend took it",
        "rewrite the model's line that calls it with ops that decompose to core ATen, or ship the model as a "
        "pt2_program() or aoti_package(), which keep the op",
    ),
    KnownFailure(
        r"cannot parse value starting with: -",
        "ExecuTorch 1.4.1's Vulkan serializer writes the delegate's graph as JSON for flatc, and writes a "
        "non-finite constant (such as the -inf that fills an attention mask) in a form flatc cannot parse",
        'lower this model to another backend (backends = ["xnnpack"], or none: portable kernels); Vulkan lowers '
        "models without non-finite constants (CNNs)",
    ),
    KnownFailure(
        r"Missing out variants",
        "ExecuTorch has no out-variant kernel for this op, so it cannot run on the portable kernels",
        'delegate it to a backend that takes it (backends = ["xnnpack"]), or choose another quantize scheme',
    ),
)

# The workaround a step's failure gets when no known failure matches.
STEP_WORKAROUNDS = {
    "coreml_convert": COREML_VIA_EXECUTORCH,
    "partition": "put another backend first in backends, or none (portable kernels), to see which one fails",
    "decompose": "keep_ops = [\"<the op>\"] keeps that op out of the decomposition, or build without decompose",
    "onnx_export": 'decompose = "core_aten" on the onnx_model() exports the core-ATen program, which avoids many '
                   "ops the ONNX exporter cannot translate",
    "aoti": "aoti_package(compile = False) writes the C++ source without compiling it on this host",
    "coreml_compress": "build the package without compress, or with the other compression "
                       "(palettize(nbits) or linear_quantize())",
}

# Where an error names the failing op or node (each pattern has group `node` and/or `op`).
_WHERE = (
    r"While executing %(?P<node>\w+) : .*?target=(?:torch\.ops\.)?(?P<op>[\w.]+)",
    r"converting '(?P<op>[^']+)' op \(located at: '(?P<node>[^']+)'\)",
    r"Unsupported fx node (?P<node>\S+), kind (?P<op>[^\s,]+)",
    r"convert function for op '(?P<op>[^']+)'",
    r"translating node %(?P<node>\S+)",
    r"Missing out variants: \{'?(?P<op>[^'},]+)",
    r"Operator torch\._ops\.(?P<op>[\w.]+) is not in Core ATen opset",
)


def _chain(err: BaseException, context: bool = True) -> list[BaseException]:
    """The exception and its causes (with `context`, also what it was raised while handling)."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen and len(chain) < 20:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or (err.__context__ if context else None)
    return chain


def _text(err: BaseException) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(
        "\n".join([str(e), *getattr(e, "__notes__", [])]) for e in _chain(err)
    ))


def _where(text: str) -> str:
    for pattern in _WHERE:
        m = re.search(pattern, text)
        if m:
            found = m.groupdict()
            node, op = found.get("node"), found.get("op")
            if node and op:
                return f" at node '{node}' ({op})"
            return f" at node '{node}'" if node else f" at op '{op}'"
    return ""


def origin(trace: str, workspace: Path) -> str:
    """Where a traced op comes from, read off a stack trace (a node's, or one an error quotes): the
    user's own line, and the library line that made the op if another. Empty if none is recorded."""
    root = str(workspace).rstrip("/") + "/"
    found = frames(trace)
    if not found:
        return ""

    def show(frame) -> str:
        path, number, function, code = frame
        if not number and not path.startswith("/"):  # a program's own frame: export dropped its number
            number = find_line(workspace / path, function, code)
        path = path.removeprefix(root).split("site-packages/", 1)[-1]
        return path + (f":{number}" if number else "") + (f" ({code})" if code else "")

    # Programs keep the workspace's paths relative (export's normalize): those frames are the user's.
    own = [f for f in found if not f[0].startswith("/") or user_file(f[0], workspace) is not None]
    parts = [f"your code at {show(own[-1])}"] if own else []
    if not own or found[-1] != own[-1]:
        parts.append(f"made at {show(found[-1])}")
    return ", ".join(parts)


def _packages(err: BaseException) -> str:
    """Who raised `err`: the toolchain package the step called into (and the one that raised, if
    another), or modelbuild's own rule code."""
    frames = traceback.extract_tb(err.__traceback__)
    if frames and frames[-1].filename.startswith(str(Path(__file__).parent) + "/"):
        return f"modelbuild's rules/{Path(frames[-1].filename).name}:{frames[-1].lineno}"
    names = [f.filename.split("site-packages/", 1)[1].split("/", 1)[0] for f in frames if "site-packages/" in f.filename]
    if not names:
        return "the toolchain"
    return names[0] if names[0] == names[-1] else f"{names[0]} (raised in {names[-1]})"


def explain(step: str, err: BaseException, workspace: Path, log: str = "") -> str:
    """The message for a toolchain failure of `step`: no traceback, the log has it."""
    text = _text(err)
    # Converters often log the failing node rather than raise with it (coremltools' "ERROR - converting"),
    # and tools the toolchain runs print their error (flatc's "error: cannot parse ...").
    searched = text + "\n" + "\n".join(l for l in log.splitlines() if "ERROR" in l or "error:" in l or "located at" in l)
    root = _chain(err, context=False)[-1]  # what the toolchain chained explicitly (raise ... from)
    first = next((l.strip() for l in str(root).splitlines() if l.strip()), "")
    first = re.sub(r"[^\s'\"]*site-packages/", "", first)  # a tool's path (flatc) reads as its package's
    lines = [f"the {step} step failed{_where(searched)}, in {_packages(root)} rather than in the model's code:",
             f"  {type(root).__name__}: {first}" if first else f"  {type(root).__name__}"]
    # torch.fx quotes the failing node's stack trace after this line; other frames are the toolchain's.
    where = origin(text.split("Original traceback:", 1)[1], workspace) if "Original traceback:" in text else ""
    if where:
        lines.append(f"  from: {where}")
    known = next((k for k in KNOWN if re.search(k.pattern, searched)), None)
    if known:
        lines.append(f"  cause: {known.cause}")
    workaround = known.workaround if known else STEP_WORKAROUNDS.get(step)
    if workaround:
        lines.append(f"  workaround: {workaround}")
    lines.append("  (the traceback is in the log)")
    return "\n".join(lines)
