"""Our //:llama_8da4w beside ExecuTorch's own export_llm build of the same weights: sizes,
decode speed in the same runner, and whether the greedy tokens match.

    .venv/bin/python bench/llm_peer_table.py [--workspace DIR] [--out DIR] [--repeats 200] [-j 2]

Builds //:llama_8da4w in a fresh copy of tests/workspaces/llm (or in --workspace DIR, e.g. the
copy bench/llm_table.py built, where it is a cache hit), then the peer with bench/llm_peer.py's
build_peer() from the very model our build exports (models.decoders:tiny_llama after
torch.manual_seed(init_seed), the zoo on sys.path: rules/lib/modelio.load_model) with the
target's own settings: XNNPACK, 8da4w with its group size, KV cache with custom SDPA, its
max_seq_len / max_context_len, and our .pte's BOS and EOS ids as metadata.

Speed: both .pte run in ExecuTorch's TextLLMRunner (temperature 0, the same prompt, as many
new tokens as the cache leaves), one warm-up generation each, then --repeats generations
alternating ours and the peer's so that the other load of a shared machine falls on both.
Decode tokens/s is (tokens - 1) / (time of the last token - time of the first) by perf_counter
in the token callback, and by the runner's own Stats (a whole-ms clock); medians are shown, and
the best run's rate, which the other load of a shared machine disturbs least.
Tokens: both programs' greedy ids through executorch.runtime (llm_peer.greedy_ids, no stop at
EOS), compared with each other and with the fp32 eager model's.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from llm_peer import build_peer, eager_parity, greedy_ids, pte_info, zoo_model  # noqa: E402  (bench/ on sys.path)
from llm_table import fresh_copy, llm_targets  # noqa: E402

TARGET = "//:llama_8da4w"
PROMPT = "Beautiful is better than"  # the zoo tokenizer's own text (the Zen of Python)


def build_ours(ws: Path, label: str, jobs: int) -> float:
    """Build one target of the workspace copy (a cache hit when the table built it already)."""
    start = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "modelbuild"), "build", label, "-j", str(jobs)],
                          cwd=ws, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"modelbuild build {label} failed in {ws}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - start


def ours(ws: Path, label: str):
    """The target's declaration and its model's, and the shipped files (refused: a .ptd, which
    greedy_ids' executorch.runtime cannot load beside a .pte)."""
    target = next((t for t in llm_targets(ws) if t.label == label), None)
    if target is None:
        sys.exit(f"{label} is not an llm_program of {ws}")
    if target.decl.external_weights or target.format != ".pte" or target.backend != "xnnpack":
        sys.exit(f"{label}: the peer is an XNNPACK .pte without a .ptd; pick such a target")
    name = label.rsplit(":", 1)[-1]
    return target, ws / "out" / f"{name}.pte", ws / "out" / f"{name}.tokenizer.json"


def build_the_peer(ws: Path, target, our_pte: Path, out: Path) -> tuple[Path, float, float]:
    """export_llm on our model's weights with our target's settings; the peer .pte, its build
    seconds, and the max |logit| gap of its eager twin to our eager model (0: same weights)."""
    decl, meta = target.decl, pte_info(our_pte)["metadata"]
    start = time.monotonic()
    peer = build_peer(None, out, max_seq_len=decl.max_seq_len, group_size=decl.quantize.group_size,
                      metadata={"get_bos_id": meta["get_bos_id"], "get_eos_ids": meta["get_eos_ids"]},
                      model=zoo_model(ws, target.model_decl.entry, target.model_decl.init_seed),
                      max_context_len=decl.max_context_len)
    seconds = time.monotonic() - start
    return peer, seconds, eager_parity(zoo_model(ws, target.model_decl.entry, target.model_decl.init_seed), out)


@contextlib.contextmanager
def runner_log(path: Path):
    """The runtime's and runner's C++ logs (some 15 lines a generation) and the converter's prints
    go to a file, as a step's do (rules.worker), not between the tables."""
    from rules.worker import captured

    with captured(str(path)):
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)  # C stdio's buffer, else it reaches the terminal later


def one_generation(runner, prompt: str, new_tokens: int) -> dict:
    """One greedy generation from position 0, timed per token in the callback."""
    from executorch.extension.llm.runner import GenerationConfig

    stamps, pieces, stats = [], [], {}

    def on_token(piece: str) -> None:
        stamps.append(time.perf_counter())
        pieces.append(piece)

    runner.reset()  # the runner keeps its position across generate() calls (a chat); start over
    runner.generate(prompt, GenerationConfig(temperature=0.0, max_new_tokens=new_tokens, echo=False),
                    token_callback=on_token, stats_callback=lambda s: stats.update(json.loads(s.to_json_string())))
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {"tokens": len(stamps), "text": "".join(pieces), "stats": stats,
            "decode_tokens_per_s": (len(stamps) - 1) / span if span else None,
            "runner_decode_tokens_per_s": stats.get("decode_token_per_sec")}


def timed(programs: dict[str, Path], tokenizer: Path, prompt: str, new_tokens: int, repeats: int) -> dict:
    """Per program: the generations' medians, runs alternating between the programs."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  the peer's custom_sdpa, update_cache
    import executorch.kernels.quantized  # noqa: F401  quantized embeddings, should a program have them
    from executorch.extension.llm.runner import TextLLMRunner

    runners = {name: TextLLMRunner(str(pte), str(tokenizer), None) for name, pte in programs.items()}
    runs: dict[str, list[dict]] = {name: [] for name in programs}
    for name, runner in runners.items():
        one_generation(runner, prompt, new_tokens)  # warm-up: first-call allocations, caches
    for _ in range(repeats):
        for name, runner in runners.items():
            runs[name].append(one_generation(runner, prompt, new_tokens))
    return {name: summarize(r) for name, r in runs.items()}


def summarize(runs: list[dict]) -> dict:
    def median(key: str):
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    rates = [r["decode_tokens_per_s"] for r in runs if r["decode_tokens_per_s"]]
    return {"tokens": runs[-1]["tokens"], "text": runs[-1]["text"], "decode": median("decode_tokens_per_s"),
            "runner_decode": median("runner_decode_tokens_per_s"), "runs": len(runs),
            "spread": (min(rates), max(rates)) if rates else None}


def eager_ids(model, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """The fp32 eager model's greedy ids: full forward each step (tiny model; no cache to trust)."""
    import torch

    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(new_tokens):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt_ids):]


def agreement(a: list[int], b: list[int]) -> str:
    """The identical prefix of two free-running id lists, and the positions equal (which, after
    the first difference, compare two different continuations)."""
    same, n = sum(x == y for x, y in zip(a, b)), min(len(a), len(b))
    prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), n)
    return f"identical prefix {prefix}/{n} ({same}/{n} positions equal)"


def tokens_report(ws: Path, target, programs: dict[str, Path], tokenizer: Path, prompt: str, n: int) -> dict:
    """Greedy ids of both programs and of the eager model, and how they agree."""
    ids = {name: greedy_ids(pte, tokenizer, prompt, n, stop_at_eos=False) for name, pte in programs.items()}
    prompt_ids = ids["ours"]["prompt_ids"]
    model = zoo_model(ws, target.model_decl.entry, target.model_decl.init_seed)
    eager = eager_ids(model, prompt_ids, n)
    return {"prompt_ids": prompt_ids, "ours": ids["ours"]["ids"], "peer": ids["peer"]["ids"], "eager": eager,
            "ours_vs_peer": agreement(ids["ours"]["ids"], ids["peer"]["ids"]),
            "ours_vs_eager": agreement(ids["ours"]["ids"], eager),
            "peer_vs_eager": agreement(ids["peer"]["ids"], eager),
            "match": ids["ours"]["ids"] == ids["peer"]["ids"]}


def ratio_line(what: str, ratio: float, goal: str, met: bool) -> str:
    return f"- {what} ours/peer: **{ratio:.3f}x** (goal {goal}: {'met' if met else 'NOT met'})"


def fmt(value, spec: str = "{:,.0f}") -> str:
    return "–" if value is None else spec.format(value)


def print_table(sizes: dict, speed: dict, tokens: dict, meta: dict) -> None:
    print("| | ours (//:llama_8da4w) | peer (export_llm) |")
    print("|---|---:|---:|")
    print(f"| .pte bytes | {sizes['ours']:,} | {sizes['peer']:,} |")
    print(f"| decode tok/s, median (perf_counter in token callback) | {fmt(speed['ours']['decode'])} "
          f"| {fmt(speed['peer']['decode'])} |")
    print(f"| decode tok/s, min–max over runs (max: the best run) | {spread(speed['ours'])} | {spread(speed['peer'])} |")
    print(f"| decode tok/s, median (runner Stats, whole ms) | {fmt(speed['ours']['runner_decode'])} "
          f"| {fmt(speed['peer']['runner_decode'])} |")
    print(f"| tokens per generation | {speed['ours']['tokens']} | {speed['peer']['tokens']} |")
    print(f"| greedy ids vs fp32 eager | {tokens['ours_vs_eager']} | {tokens['peer_vs_eager']} |")
    for key in ("get_bos_id", "get_eos_ids", "get_max_seq_len", "get_max_context_len", "use_sdpa_with_kv_cache"):
        print(f"| metadata {key} | {meta['ours'].get(key)} | {meta['peer'].get(key)} |")


def spread(s: dict) -> str:
    return f"{s['spread'][0]:,.0f}–{s['spread'][1]:,.0f}" if s["spread"] else "–"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, help="a built copy of the LLM zoo (bench/llm_table.py's)")
    parser.add_argument("--target", default=TARGET)
    parser.add_argument("--out", type=Path, help="where the peer is built (default: beside the workspace)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--repeats", type=int, default=200)  # a generation takes ms: many are cheap
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    ws = (args.workspace or fresh_copy()).resolve()
    out = (args.out or ws.parent / "peer").resolve()
    out.mkdir(parents=True, exist_ok=True)
    build_s = build_ours(ws, args.target, args.jobs)
    target, our_pte, tokenizer = ours(ws, args.target)
    with runner_log(out / "runner.log"):
        peer, peer_s, parity = build_the_peer(ws, target, our_pte, out)
        programs = {"ours": our_pte, "peer": peer}
        meta = {name: pte_info(pte)["metadata"] for name, pte in programs.items()}
        prompt_len = len(greedy_ids(our_pte, tokenizer, args.prompt, 1)["prompt_ids"])
        new_tokens = meta["ours"]["get_max_context_len"] - prompt_len  # all the cache leaves
        speed = timed(programs, tokenizer, args.prompt, new_tokens, args.repeats)
        tokens = tokens_report(ws, target, programs, tokenizer, args.prompt, new_tokens)
    print(f"ours: modelbuild build {args.target} {build_s:.0f} s wall; peer: export_llm {peer_s:.0f} s wall; "
          f"eager llama_transformer vs our eager model: max |logit diff| {parity:.2e}\n")
    sizes = {"ours": our_pte.stat().st_size, "peer": peer.stat().st_size}
    report(args, sizes, speed, tokens, meta, new_tokens)
    print(f"\nworkspace: {ws}\npeer: {peer} (logs: {out / 'export_llm.log'}, {out / 'runner.log'})")


def report(args, sizes: dict, speed: dict, tokens: dict, meta: dict, new_tokens: int) -> None:
    print(f"prompt {args.prompt!r} ({len(tokens['prompt_ids'])} tokens), up to {new_tokens} new tokens, "
          f"{args.repeats} timed generations each after one warm-up, alternating\n")
    print_table(sizes, speed, tokens, meta)
    size_ratio = sizes["ours"] / sizes["peer"]
    speed_ratio = speed["ours"]["decode"] / speed["peer"]["decode"]
    best_ratio = speed["ours"]["spread"][1] / speed["peer"]["spread"][1]
    print()
    print(ratio_line("size", size_ratio, "<= 1.05x", size_ratio <= 1.05))
    print(ratio_line("decode speed (medians)", speed_ratio, ">= 0.95x", speed_ratio >= 0.95))
    print(ratio_line("decode speed (best runs)", best_ratio, ">= 0.95x", best_ratio >= 0.95))
    print(f"- greedy tokens ours vs peer: {'identical' if tokens['match'] else 'differ'} ({tokens['ours_vs_peer']})")
    print(f"\nruntime greedy ids (prompt {tokens['prompt_ids']}):\n  ours  {tokens['ours']}\n"
          f"  peer  {tokens['peer']}\n  eager {tokens['eager']}")
    print(f"runner text:\n  ours {speed['ours']['text']!r}\n  peer {speed['peer']['text']!r}")


if __name__ == "__main__":
    main()
