"""The LLM zoo's table: every llm_program of tests/workspaces/llm, with its token agreement and
logits SNR against the eager model, its .pte and .ptd sizes and its decode speed.

    .venv/bin/python bench/llm_table.py [-j 2] [--workspace DIR]

Builds a fresh copy of the LLM zoo with a fresh cache (--keep-going), as bench/zoo_table.py does
the zoo, then reads each target's step metrics from the action cache: llm_verify's "generation"
(token_agreement, identical_prefix, min_logits_snr_db, decode_tokens_per_s, runner, size). With
--workspace, an already built copy is read instead of building.

Prints one row per llm_program target, then per scheme the lowest agreement and SNR seen next
to the default tolerance rules/targets/llm.py holds that scheme to (the numbers that justify
QUANTIZED_LLM_TOLERANCE, EMBEDDINGS_TOLERANCE and FLOAT_LLM_TOLERANCE).

Decode tokens/s are two clocks of one program: "loop" is llm_verify's own greedy loop through
the ExecuTorch runtime (perf_counter); "runner" is TextLLMRunner's Stats, whose clock counts
whole milliseconds, so on these tiny models it is coarse. Both are single runs on a shared
machine: compare them across rows only loosely.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from zoo_table import NONE, REPO, Results, build  # noqa: E402  (bench/ is the script's own directory)

LLM_ZOO = REPO / "tests" / "workspaces" / "llm"


class LlmTarget(NamedTuple):
    """One llm_program as declared: what the table says about it before any metric."""

    label: str
    model: str  # the model target's name (":llama" -> "llama")
    decl: object  # rules.targets.llm.LlmProgram
    model_decl: object  # the model() it builds: entry, init_seed, kwargs

    @property
    def format(self) -> str:
        return ".pte + .ptd" if self.decl.external_weights else ".pte"

    @property
    def backend(self) -> str:
        return ", ".join(b.backend for b in self.decl.backends) or "portable"

    @property
    def scheme(self) -> str:
        """fp32, 8da4w, int8 embeddings, 8da4w + int8 emb, pt2e 8da8w, ... (ExecuTorch's names for the schemes)."""
        from rules.steps.llm.export import LINEAR_SCHEMES

        names = {**LINEAR_SCHEMES, "pt2e_int8_dynamic": "pt2e 8da8w", "pt2e_int8_dynamic_int4w": "pt2e 8da4w per channel"}
        linear = names[self.decl.quantize.scheme] if self.decl.quantize else None
        if linear and self.decl.quantize.group_size != 32:
            linear += f" g{self.decl.quantize.group_size}"
        emb = self.decl.quantize_embeddings
        if linear and emb:
            return f"{linear} + {emb} emb"
        return linear or (f"{emb} embeddings" if emb else "fp32")


def llm_targets(ws: Path) -> list[LlmTarget]:
    """The workspace's llm_program targets, loaded as modelbuild loads them (not parsed from the
    .star), in model order and then fp32, embeddings, linear, external weights."""
    from buildsys.load.target_graph import TargetGraph
    from buildsys.load.workspace import Workspace
    from rules import RULESET

    graph = TargetGraph(Workspace.find(ws), RULESET)
    found = []
    for label in graph.expand(["//..."]):
        target = graph.targets[label]
        if target.kind == "llm_program":
            model = next(graph.targets[d] for d in graph.deps(label) if graph.targets[d].kind == "model")
            found.append(LlmTarget(str(label), model.label.name, target.decl, model.decl))
    return sorted(found, key=lambda t: (t.model, t.decl.quantize is not None, t.decl.quantize_embeddings is not None,
                                        t.decl.external_weights, t.backend))


def number(value, fmt: str = "{:,}") -> str:
    return NONE if value is None else fmt.format(value)


def row(t: LlmTarget, results: Results) -> list[str]:
    """The table's cells for one target; a failed one says which step failed and why."""
    head = [t.model, t.format, t.backend, t.scheme]
    gen = results.metrics.get((t.label, "llm_verify"), {}).get("generation")
    if gen is None:
        why = results.failed.get(t.label, "not built (no failure recorded)")
        return head + [f"**failed** {why}"] + [NONE] * 5
    size, runner = gen.get("size", {}), gen.get("runner", {})
    agreement = f"{gen['token_agreement']:.2f} (prefix {gen['identical_prefix']}/{len(gen['eager_tokens'])})"
    return head + [agreement, number(gen["min_logits_snr_db"], "{:.1f}"), number(size.get("pte_bytes")),
                   number(size.get("ptd_bytes") or None), number(gen.get("decode_tokens_per_s"), "{:,.0f}"),
                   number(runner.get("decode_tokens_per_s"), "{:,.0f}")]


def table(targets: list[LlmTarget], results: Results) -> None:
    print("| model | format | backend | scheme | token agreement (identical prefix) | min logits SNR (dB) "
          "| .pte bytes | .ptd bytes | decode tok/s (loop) | decode tok/s (runner) |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for t in targets:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row(t, results)) + " |")
    print("\nDecode tok/s: one generation of the check's new_tokens each, on whatever else the machine runs; "
          "\"runner\" is TextLLMRunner's whole-ms clock (a few ms in all), so it is coarse. "
          "bench/llm_peer_table.py times decode properly.")


def tolerances(targets: list[LlmTarget], results: Results) -> None:
    """Per scheme, the lowest agreement and SNR any model reached, beside the default tolerance
    that scheme is held to: the margin is what keeps the defaults from failing a good build."""
    from rules.targets.llm import default_tolerance

    seen: dict[str, list] = {}
    for t in targets:
        gen = results.metrics.get((t.label, "llm_verify"), {}).get("generation")
        if gen is not None:
            seen.setdefault(t.scheme, [default_tolerance(t.decl), []])[1].append(gen)
    lines = []
    for scheme, (tol, gens) in seen.items():
        agree = min(g["token_agreement"] for g in gens)
        snr = min(g["min_logits_snr_db"] for g in gens)
        lines.append(f"{scheme}: min agreement {agree:.2f}, min SNR {snr:.1f} dB over {len(gens)} programs "
                     f"(default tolerance: agreement >= {tol.min_token_agreement}, SNR >= {tol.min_snr_db} dB)")
    print("Per scheme, the worst seen against the defaults of rules/targets/llm.py: " + "; ".join(lines) + ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--workspace", type=Path, help="read an already built copy of the LLM zoo instead")
    args = parser.parse_args()
    ws = (args.workspace or built_copy(args.jobs)).resolve()
    targets, results = llm_targets(ws), Results(ws)
    table(targets, results)
    print()
    tolerances(targets, results)
    print(f"\nworkspace: {ws}")


def fresh_copy() -> Path:
    """A copy of the LLM zoo without its out/ or cache/: every action runs."""
    ws = Path(tempfile.mkdtemp(prefix="mb-llm-")) / "llm"
    shutil.copytree(LLM_ZOO, ws, ignore=shutil.ignore_patterns("__pycache__", "out", "cache", "events.jsonl"))
    return ws


def built_copy(jobs: int) -> Path:
    """A fresh copy, built whole with --keep-going (its build events in events.jsonl)."""
    ws = fresh_copy()
    wall = build(ws, jobs)
    print(f"LLM zoo build: {wall:.0f} s wall with -j {jobs} (fresh cache, --keep-going)\n")
    return ws


if __name__ == "__main__":
    sys.exit(main())
