"""One table per format and scheme on the example models: artifact size, build seconds and
the verification metrics. Builds a fresh copy of the example models with every format and
scheme declared (--keep-going: a combination the toolchain cannot do shows as failed).

    .venv/bin/python bench/artifact_table.py [-j 2]

Build seconds are the sum of the target's own actions (a shared export counts for each
artifact that uses it); sizes are relative to the fp32 artifact of the same model and format.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "testbed"))
from example import copy_example  # noqa: E402

from buildsys.cache.action_cache import ActionCache  # noqa: E402

MODELS = {  # name -> the model() declaration (as in the example BUILD.models)
    "transformer": 'entry = "models.transformer:Transformer", inputs = {"embedding": tensor([2, 32], fill = "rand")}, '
                   'dynamic_shapes = {"embedding": {0: dim("batch", min = 1, max = 128)}}',
    "convnet": 'entry = "models.vision.convnet:ConvNet", inputs = {"x": tensor([1, 1, 16, 16])}, '
               'dynamic_shapes = {"x": {2: dim("h", min = 16, max = 1024), 3: dim("w", min = 16, max = 1024)}}',
    "sincos": 'entry = "models.sincos:SinCos", inputs = {"x": tensor([10, 10], seed = 1), "y": tensor([10, 10], seed = 2)}',
    "convrelu": 'entry = "models.convrelu:ConvReluPool", inputs = {"x": tensor([1, 3, 64, 64])}, '
                'keyword_inputs = {"constant": tensor([1, 16, 64, 64], fill = "ones")}',
}
VARIANTS = [  # (format, scheme, rule, attributes)
    (".pt2", "fp32", "pt2_program", ""),
    (".pt2", "core_aten", "pt2_program", 'decompose = "core_aten"'),
    (".pte xnnpack", "fp32", "executorch_program", 'backends = ["xnnpack"]'),
    (".pte xnnpack", "pt2e int8 static", "executorch_program", 'backends = ["xnnpack"], quantize = "pt2e_int8_static"'),
    (".pte xnnpack", "pt2e int8 dynamic", "executorch_program", 'backends = ["xnnpack"], quantize = "pt2e_int8_dynamic"'),
    (".pte xnnpack", "torchao 8da4w g32", "executorch_program", 'backends = ["xnnpack"], quantize = "torchao_int8_dynact_int4w"'),
    (".pte xnnpack", "torchao 8da8w", "executorch_program", 'backends = ["xnnpack"], quantize = "torchao_int8_dynact_int8w"'),
    (".pte xnnpack", "torchao int8 weight-only", "executorch_program", 'backends = ["xnnpack"], quantize = "torchao_int8_weight_only"'),
    (".pte portable", "fp32", "executorch_program", ""),
    (".pte portable", "pt2e int8 dynamic", "executorch_program", 'quantize = "pt2e_int8_dynamic"'),
    (".pte coreml", "fp16", "executorch_program", "backends = [coreml()]"),
    (".mlpackage", "fp16", "coreml_package", ""),
    (".mlpackage", "linear int8", "coreml_package", "compress = linear_quantize()"),
    (".mlpackage", "palettize 4 bit", "coreml_package", "compress = palettize(4)"),
    (".mlpackage", "palettize 2 bit", "coreml_package", "compress = palettize(2)"),
    (".onnx", "fp32", "onnx_model", 'decompose = "core_aten"'),
    (".aoti.pt2", "source", "aoti_package", ""),
]


def target_name(model: str, i: int) -> str:
    return f"{model}_v{i}"


def workspace() -> Path:
    ws = copy_example(Path(tempfile.mkdtemp(prefix="mb-table-")))
    (ws / "models" / "vision" / "BUILD.models").unlink()
    lines = []
    for model, decl in MODELS.items():
        lines.append(f'model(name = "{model}", {decl})')
        for i, (_, _, rule, attrs) in enumerate(VARIANTS):
            lines.append(f'{rule}(name = "{target_name(model, i)}", model = ":{model}"{", " + attrs if attrs else ""})')
    (ws / "BUILD.models").write_text("\n".join(lines) + "\n")
    return ws


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    ws = workspace()
    events_path = ws / "events.jsonl"
    subprocess.run([str(Path(sys.executable).parent / "modelbuild"), "build", "//...", "-k", "-j", str(args.jobs),
                    "--build-events", str(events_path)], cwd=ws, capture_output=True, text=True)
    events = [json.loads(l) for l in events_path.read_text().splitlines()]
    seconds: dict[str, float] = defaultdict(float)
    failed: dict[str, str] = {}
    cache = ActionCache(ws / "cache" / "ac")
    reports = {}
    for e in events:
        for label in e["labels"]:
            seconds[label] += e["seconds"]
            if e["status"] == "failed":
                failed[label] = f"{e['step']}: " + (e.get("error") or "").splitlines()[0][:70]
        if e["step"] == "verify" and e["status"] in ("ran", "cached"):
            reports[e["label"]] = cache.get(e["action_key"]).metrics["verification"]
    cache.close()

    by_format: dict[str, list] = defaultdict(list)
    for i, (fmt, scheme, _, _) in enumerate(VARIANTS):
        by_format[fmt].append((i, scheme))
    ext = {".pt2": ".pt2", ".onnx": ".onnx", ".mlpackage": ".mlpackage", ".aoti.pt2": ".aoti.pt2"}
    for fmt, rows in by_format.items():
        print(f"\n### {fmt}\n")
        print("| model | scheme | size (bytes) | × fp32 | build s | verification |")
        print("|---|---|---:|---:|---:|---|")
        for model in MODELS:
            base = None
            for i, scheme in rows:
                label = f"//:{target_name(model, i)}"
                path = ws / "out" / f"{target_name(model, i)}{ext.get(fmt, '.pte')}"
                if label in failed or not path.exists():
                    print(f"| {model} | {scheme} | – | – | {seconds[label]:.1f} | FAILED {failed.get(label, '')} |")
                    continue
                size = size_of(path)
                base = base or size
                report = reports.get(label, {})
                if report.get("numeric"):
                    snr = min(c["snr_db"] for c in report["cases"])
                    err = max(float("inf") if c["max_abs_error"] is None else c["max_abs_error"] for c in report["cases"])
                    check = f"min SNR {snr:.1f} dB, max abs err {err:.2g} ({len(report['cases'])} cases)"
                elif "compressed_weights" in report:
                    w = report["compressed_weights"]
                    check = f"structural; decompressed weights in torch: SNR {w['snr_db']:.1f} dB"
                else:
                    check = "structural (needs the device)"
                print(f"| {model} | {scheme} | {size:,} | {size / base:.2f} | {seconds[label]:.1f} | {check} |")
    print(f"\nworkspace: {ws}")


if __name__ == "__main__":
    main()
