"""How `modelbuild show` presents what a step reported (its metrics): the rule set's report.

The engine knows no metric names: it hands a cached result's metrics to `RuleSet.report` and
prints what comes back.
"""
from __future__ import annotations

import json

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from buildsys.rule_api import human_bytes


def metrics_view(metrics: dict):
    """Tables for the metrics steps report; anything else as compact JSON."""
    parts = []
    for key, value in metrics.items():
        if key == "coverage" and isinstance(value, dict) and "by_kind" in value:
            parts.append(_coverage_table(value))
        elif key == "verification" and isinstance(value, dict):
            parts.append(_verification_table(value))
            if isinstance(value.get("size"), dict):
                parts.append(_size_table(value["size"]))
        elif key == "delegation" and isinstance(value, dict):
            table = Table("ops", "count", title="delegation", title_justify="left", box=None)
            for what, share in (("all ops", value.get("ops")), ("compute ops (conv, matmul, linear)", value.get("compute_ops"))):
                if share and share.get("total"):
                    table.add_row(f"{what} delegated", f"{share['delegated']} of {share['total']} ({share['share']:.0%})")
            for backend, n in value.get("delegated", {}).items():
                table.add_row(f"delegated to {backend}", str(n))
            for op, n in value.get("portable", {}).items():
                table.add_row(f"portable: {op}", str(n))
            parts.append(table)
        else:
            parts.append(f"{key}: {escape(json.dumps(value, sort_keys=True))}")
    return Group(*parts)


def _coverage_table(coverage: dict):
    """What a quantization covered: layers by kind, and the share of weight bytes."""
    title = (f"quantized {coverage['quantized_layers']} of {coverage['layers']} weight-bearing layers, "
             f"{coverage['quantized_weight_bytes']:,} of {coverage['weight_bytes']:,} weight bytes "
             f"({coverage['quantized_share']:.0%})")
    table = Table("layers", "quantized", "of", title=escape(title), title_justify="left", box=None)
    for kind, counts in coverage["by_kind"].items():
        table.add_row(escape(kind), str(counts["quantized"]), str(counts["layers"]))
    for reason, names in coverage.get("left_float", {}).items():
        table.add_row(f"[dim]left in float: {escape(reason)}[/]", "", escape(str(names)))
    return table


def _verification_table(report: dict):
    if not report.get("numeric"):
        text = f"verification: structural only. {escape(report.get('note', ''))}"
        weights = report.get("compressed_weights")
        if weights:
            text += (f"\ncompressed weights loaded into the torch model: output SNR {weights['snr_db']:.1f} dB, "
                     f"max abs error {weights['max_abs_error']:.3g}, weakest weight {weights['weight_snr_db_min']} dB, "
                     f"{weights['compressed_mapped']}/{weights['compressed_consts']} weights mapped")
        return text
    table = Table("case", "shapes", "max abs error", "SNR dB", "eager RMS", "seconds",
                  title="verification against eager", title_justify="left", box=None)
    for case in report.get("cases", []):
        shapes = escape(json.dumps(case.get("shapes", {})))
        rms = f"{case['reference_rms']:.3g}" if "reference_rms" in case else ""
        seconds = f"{case['seconds']:.2f}" if "seconds" in case else ""  # what the case cost: choose with verify_cases
        if "error" in case:
            table.add_row(escape(case["case"]), shapes, "failed", escape(case["error"]), rms, seconds)
        else:
            err = case["max_abs_error"]
            table.add_row(escape(case["case"]), shapes, "inf" if err is None else f"{err:.3g}", f"{case['snr_db']:.1f}",
                          rms, seconds)
    return table


_SIZE_PARTS = {"program_bytes": "program", "graph_bytes": "graph", "model_bytes": "model spec",
               "library_bytes": "compiled library", "sample_inputs_bytes": "sample inputs"}


def _size_table(size: dict):
    """The artifact's bytes: total, constant data (weights), each delegate's payload, other parts."""
    table = Table("part", "", "bytes", title="size", title_justify="left", box=None)
    table.columns[1].justify = table.columns[2].justify = "right"

    def row(what: str, n: int) -> None:
        table.add_row(what, human_bytes(n), f"{n:,}")

    row("total", size["total_bytes"])
    row("constants (weights)", size["constant_bytes"])
    inner = size.get("delegate_constant_bytes", {})
    for backend, n in size.get("delegates", {}).items():
        row(f"{escape(backend)} payload", n)
        if inner.get(backend):  # counted in the constants above too
            row("  of which weights", inner[backend])
    for key, what in _SIZE_PARTS.items():
        if key in size:
            row(what, size[key])
    return table
