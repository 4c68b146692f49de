"""The zoo's table: every model of tests/workspaces/zoo x every format and scheme, built or why
not, with size, build seconds, SNR and the shares of ops delegated and of weights quantized.

    .venv/bin/python bench/zoo_table.py [-j 2] [--workspace DIR]

Builds a fresh copy of the zoo with a fresh cache (--keep-going), then reads each target's
step metrics from the action cache. The combinations modelbuild refuses at plan time are
declared in the zoo's refused/ workspace; each is planned alone (`query --actions`) and its
message shown. With --workspace, an already built copy is read instead of building.

Prints a format/scheme x model matrix (the README's table) with a note saying why for each
failure and refusal, then one row per target, then the steps' warnings. Metrics read:
verify's "verification" (numeric, cases[].snr_db, compressed_weights.snr_db); partition's
"delegation" ("ops" and "compute_ops": delegated, total); quantize's "coverage" (weight_bytes,
quantized_weight_bytes, layers, quantized_layers); every step's "warnings".

Build seconds are the sum of the target's own actions (a shared export or quantize counts for
each artifact that uses it), so they are CPU time of the steps, not wall time of the build.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from buildsys.cache.action_cache import ActionCache  # noqa: E402

ZOO = REPO / "tests" / "workspaces" / "zoo"
EXT = {"pt2_program": ".pt2", "executorch_program": ".pte", "coreml_package": ".mlpackage",
       "onnx_model": ".onnx", "aoti_package": ".aoti.pt2"}
NONE = "–"


def variants(block: str) -> list[tuple[str, str, str]]:
    """(name, rule, attributes) of the zoo.star list `block` (VARIANTS or REFUSED), in order."""
    text = (ZOO / "zoo.star").read_text()
    body = re.search(rf"^{block} = \[(.*?)^\]", text, re.S | re.M).group(1)
    return re.findall(r'^\s*\("(\w+)", "(\w+)", (\{.*\})\),', body, re.M)


def describe(rule: str, attrs: str) -> tuple[str, str]:
    """(format, scheme) for the table, from a variant's rule and attributes."""
    fmt = EXT[rule]
    if rule == "executorch_program":
        fmt += " " + ("coreml" if "coreml()" in attrs else "xnnpack" if "xnnpack" in attrs else "portable")
    found = re.search(r'"quantize": "(\w+)"|"compress": (\w+\(\d*\))', attrs)
    if found:
        return fmt, found.group(1) or found.group(2)
    decomposed = re.search(r'"decompose": "(\w+)"', attrs)
    precision = "fp16" if "coreml" in fmt + rule else "fp32"
    return fmt, f"{precision}, {decomposed.group(1)}" if decomposed else precision


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def gist(text: str) -> str:
    """A failure in one line: its first line, continued while that ends in ':', and any line
    that says the cause or what to do."""
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    if not lines:
        return ""
    out = [lines[0]]
    for line in lines[1:]:
        if out[-1].endswith(":") or line.startswith(("cause:", "hint:", "workaround:")):
            out.append(line)
    return " ".join(out)


def build(ws: Path, jobs: int) -> float:
    start = time.monotonic()
    subprocess.run([str(Path(sys.executable).parent / "modelbuild"), "build", "//...", "-k", "-j", str(jobs),
                    "--build-events", str(ws / "events.jsonl")], cwd=ws, capture_output=True, text=True)
    return time.monotonic() - start


def refusal(ws: Path, label: str) -> str | None:
    """The plan-time refusal of one target of the refused/ workspace (None: it plans)."""
    proc = subprocess.run([str(Path(sys.executable).parent / "modelbuild"), "query", "--actions", label,
                           "--cache-dir", str(ws / "refused" / "cache")], cwd=ws / "refused", capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    text = " ".join((proc.stdout + proc.stderr).split())
    return text.split("': ", 1)[-1]  # after "ERROR: BUILD.models:6 (via ...): executorch_program() 'name'"


class Results:
    """What the build did to each target, from the build events and the action cache."""

    def __init__(self, ws: Path):
        events = [json.loads(l) for l in (ws / "events.jsonl").read_text().splitlines() if l.strip()]
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: dict[str, str] = {}
        self.metrics: dict[tuple[str, str], dict] = {}  # (label, step) -> metrics
        cache = ActionCache(ws / "cache" / "ac")
        try:
            for e in events:
                for label in e["labels"]:
                    self.seconds[label] += e["seconds"]
                    if e["status"] == "failed" and label not in self.failed:
                        self.failed[label] = f"{e['step']}: {gist(e.get('error'))}"
                    if e["status"] in ("ran", "cached"):
                        record = cache.get(e["action_key"])
                        if record is not None:
                            self.metrics[(label, e["step"])] = record.metrics
        finally:
            cache.close()


def snr_cell(report: dict | None) -> str:
    if not report:
        return NONE
    if report.get("numeric"):
        snrs = [c["snr_db"] for c in report.get("cases", []) if c.get("snr_db") is not None]
        return f"{min(snrs):.1f} dB ({len(snrs)} cases)" if snrs else NONE
    weights = report.get("compressed_weights")
    if weights:
        return f"structural; decompressed weights {weights['snr_db']:.1f} dB"
    return "structural"


def percent(part, whole) -> str:
    return f"{100 * part / whole:.0f}%" if whole else NONE


def delegation_cell(metrics: dict | None) -> str:
    """Ops delegated, and compute-bearing ops delegated (partition metrics["delegation"])."""
    d = (metrics or {}).get("delegation")
    if not d:
        return NONE
    ops, compute = d.get("ops"), d.get("compute_ops")
    if ops:  # {"delegated": n, "total": n}
        cell = percent(ops["delegated"], ops["total"])
        return cell + (f" (compute {percent(compute['delegated'], compute['total'])})" if compute else "")
    delegated = sum(d.get("delegated", {}).values())  # older metrics: op counts per backend and per portable op
    return percent(delegated, delegated + sum(d.get("portable", {}).values()))


def quantized_cell(metrics: dict | None) -> str:
    """Share of weight bytes quantized, and of weight-bearing layers (quantize metrics["coverage"])."""
    if not metrics:
        return NONE
    cov = metrics.get("coverage")
    if cov:
        cell = percent(cov["quantized_weight_bytes"], cov["weight_bytes"]) if "weight_bytes" in cov else NONE
        if "layers" in cov and "quantized_layers" in cov:
            cell += f" ({cov['quantized_layers']}/{cov['layers']} layers)"
        return cell
    if "linear_layers" in metrics:  # older metrics: torchao counts nn.Linear layers only
        return f"{metrics['quantized_layers']}/{metrics['linear_layers']} nn.Linear"
    return f"{metrics.get('quantized_layers', NONE)} layers"


class Cell(NamedTuple):
    """One model x variant: what became of it, and its numbers (strings, NONE when absent)."""

    model: str
    fmt: str
    scheme: str
    status: str  # built, failed, refused
    why: str = ""
    size: str = NONE
    seconds: str = NONE
    snr: str = NONE
    delegated: str = NONE
    quantized: str = NONE


def cells(ws: Path, results: Results) -> list[Cell]:
    models = re.findall(r'^\s*name = "(\w+)",', (ZOO / "zoo.star").read_text(), re.M)
    out = []
    for model in models:
        for variant, rule, attrs in variants("VARIANTS"):
            name = f"{model}_{variant}"
            label = f"//:{name}"
            head = (model, *describe(rule, attrs))
            path = ws / "out" / f"{name}{EXT[rule]}"
            if path.exists():
                verify = results.metrics.get((label, "verify"), {}).get("verification")
                quantized = quantized_cell(results.metrics.get((label, "quantize"))) if "quantize" in attrs else NONE
                out.append(Cell(*head, "built", "", f"{size_of(path):,}", f"{results.seconds[label]:.1f}",
                                snr_cell(verify), delegation_cell(results.metrics.get((label, "partition"))), quantized))
            else:
                why = results.failed.get(label, "not built (no failure recorded)")
                out.append(Cell(*head, "failed", why, seconds=f"{results.seconds[label]:.1f}"))
        for variant, rule, attrs in variants("REFUSED"):
            why = refusal(ws, f"//:{model}_{variant}")
            out.append(Cell(model, *describe(rule, attrs), "refused" if why else "plans", why or "no longer refused"))
    return out


def long_table(found: list[Cell]) -> None:
    print("| model | format | scheme | result | size (bytes) | build s | min SNR | ops delegated (compute) | weights quantized |")
    print("|---|---|---|---|---:|---:|---|---|---|")
    for c in found:
        result = c.status if c.status == "built" else f"**{c.status}** {c.why}"
        row = [c.model, c.fmt, c.scheme, result, c.size, c.seconds, c.snr, c.delegated, c.quantized]
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")


def matrix(found: list[Cell]) -> None:
    """Format/scheme x model, one short cell each, with why each failure or refusal happened
    in numbered notes below: the README's table."""
    models = list(dict.fromkeys(c.model for c in found))
    by = {(c.fmt, c.scheme, c.model): c for c in found}
    notes: dict[str, int] = {}
    print("| format | scheme | " + " | ".join(models) + " |")
    print("|---|---|" + "---|" * len(models))
    for fmt, scheme in dict.fromkeys((c.fmt, c.scheme) for c in found):
        row = []
        for model in models:
            c = by[(fmt, scheme, model)]
            note = notes.setdefault(c.why, len(notes) + 1) if c.status in ("failed", "refused") else None
            if c.status == "built":
                row.append(f"✓ {c.snr.split(' (')[0].replace('structural; decompressed weights', 'weights')}")
            elif c.status == "failed":
                row.append(f"✗ ({note})")
            elif c.status == "refused":
                row.append(f"refused ({note})")
            else:
                row.append(c.status)
        print(f"| {fmt} | {scheme} | " + " | ".join(row) + " |")
    print("\n✓ built and checked: min SNR against eager over the cases (Core ML: structural, and for compressed "
          "packages the decompressed weights in torch); ✗ failed; refused at plan time\n")
    for why, number in notes.items():
        print(f"{number}. {why}")


def warnings(results: Results) -> list[str]:
    """Steps' own warnings (metrics["warnings"]), once per action and target."""
    return sorted({f"{label} {step}: {w}" for (label, step), m in results.metrics.items() for w in m.get("warnings", [])})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--workspace", type=Path, help="read an already built copy of the zoo instead")
    args = parser.parse_args()
    ws = args.workspace
    if ws is None:
        ws = Path(tempfile.mkdtemp(prefix="mb-zoo-")) / "zoo"
        shutil.copytree(ZOO, ws, ignore=shutil.ignore_patterns("__pycache__", "out", "cache"))
        wall = build(ws, args.jobs)
        print(f"zoo build: {wall:.0f} s wall with -j {args.jobs} (fresh cache, --keep-going)\n")
    if not (ws / "refused").is_dir():  # an older copy: plan the refusals in a fresh one
        shutil.copytree(ZOO / "refused", ws / "refused", ignore=shutil.ignore_patterns("__pycache__", "cache"))
    results = Results(ws)
    found = cells(ws, results)
    matrix(found)
    print()
    long_table(found)
    notes = warnings(results)
    if notes:
        print("\nWarnings:\n" + "\n".join(f"- {w}" for w in notes))
    print(f"\nworkspace: {ws}")


if __name__ == "__main__":
    main()
