"""The peer of our LLM build: ExecuTorch's own `export_llm` on a tiny Llama with random weights.

    .venv/bin/python bench/llm_peer.py [--out DIR] [--max-new-tokens N]

build_peer() makes the HF model our build starts from (`LlamaForCausalLM(LlamaConfig(**hparams))`
after `torch.manual_seed(0)`), saves it, converts it with ExecuTorch's own HF -> llama_transformer
converter and exports it with `python -m executorch.extension.llm.export.export_llm` (XNNPACK,
8da4w, custom SDPA, KV cache), in a subprocess because the exporter is a Hydra app that sets up
logging, torch config and output dirs of its own. run_in_runner() runs the .pte in ExecuTorch's
C++ TextLLMRunner; greedy_ids() replays the same greedy decode through executorch.runtime so
the token ids (which the runner does not expose) can be compared with another program's.

The converter is executorch.examples.models.qwen3.convert_weights: the wheel ships no Llama one
(llama/convert_weights.py only maps LoRA adapters; qwen2_5's and smollm2's need torchtune;
granite's forces tied embeddings). Qwen3's key map is Llama's plus q/k norms, it keeps HF's q/k
layout (no permute), and handles an untied lm_head, so params.json sets use_hf_rope like
ExecuTorch's own Qwen3 configs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The demo's model; main() swaps in the tokenizer's vocab size.
TINY = dict(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
            max_position_embeddings=128)
SCALAR_TYPES = {3: "int32", 4: "int64", 6: "float32", 11: "bool"}  # c10::ScalarType codes
DEMO_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A tiny model on a tiny device still needs a tokenizer.",
    "ExecuTorch runs exported programs with XNNPACK on the CPU.",
    "Once upon a time there was a small llama that liked to count: one, two, three.",
    "Pack my box with five dozen liquor jugs; then weigh each jug twice.",
    "Quantized weights: four bits per value, one scale for every group of 32.",
    "The key and value cache grows by one row for every token generated.",
    "Greedy decoding always picks the most likely next token, so runs repeat exactly.",
    "Build systems cache actions by the digest of their inputs and commands.",
    "Zebras, yaks and vicunas graze beside the quiet river at dawn?",
]


def hf_model(hparams: dict):
    """The reference model: the same seed and config our build uses, so the weights match."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**hparams)).eval()


def zoo_model(workspace: Path, entry: str = "models.decoders:tiny_llama", init_seed: int = 0):
    """A model of a workspace exactly as our build makes it (rules/lib/modelio.load_model: the
    workspace on sys.path, torch.manual_seed(init_seed), the entry called), so a peer built from
    it has our program's weights, down to the zoo's `peaked` output head."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from rules.lib.modelio import load_model

    return load_model(Path(workspace).resolve(), entry, init_seed)


def hparams_of(config) -> dict:
    """The LlamaConfig values params_json() reads, from a live config. transformers 5 keeps
    rope_theta in rope_parameters; a scaled RoPE has no ModelArgs twin here, so it is refused."""
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope_type {rope['rope_type']!r}: the peer maps only HF's default RoPE")
    names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "head_dim")
    hp = {n: getattr(config, n) for n in names if getattr(config, n, None) is not None}
    return {**hp, "rope_theta": rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))}


def params_json(hp: dict) -> dict:
    """HF LlamaConfig values -> ExecuTorch ModelArgs (examples/models/llama/model_args.py)."""
    return {
        "dim": hp["hidden_size"], "n_layers": hp["num_hidden_layers"],
        "n_heads": hp["num_attention_heads"],
        "n_kv_heads": hp.get("num_key_value_heads", hp["num_attention_heads"]),
        "head_dim": hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"],
        "hidden_dim": hp["intermediate_size"],  # else ModelArgs derives its own from dim
        "vocab_size": hp["vocab_size"], "norm_eps": hp["rms_norm_eps"],
        "rope_theta": hp["rope_theta"], "use_scaled_rope": False,
        "use_hf_rope": True,  # HF's rotate-half RoPE: the converter keeps HF's q/k layout
    }


def write_checkpoint(hparams: dict | None, out_dir: Path, model=None) -> tuple[Path, Path]:
    """HF model -> safetensors -> ExecuTorch's converter -> llama checkpoint + params.json.
    `model` (e.g. zoo_model()) is saved as it is; else hf_model(hparams) is made."""
    from executorch.examples.models.qwen3.convert_weights import convert_weights

    hf_dir, ckpt, params = out_dir / "hf", out_dir / "checkpoint.pth", out_dir / "params.json"
    model = model if model is not None else hf_model(hparams)
    model.save_pretrained(hf_dir)  # model.safetensors, as a hub checkpoint is
    convert_weights(str(hf_dir), str(ckpt))
    params.write_text(json.dumps(params_json(hparams or hparams_of(model.config)), indent=1))
    return ckpt, params


def export_config(ckpt: Path, params: Path, pte: Path, max_seq_len: int, group_size: int,
                  metadata: dict | None, max_context_len: int | None = None) -> dict:
    """The LlmConfig, as export_llm's --config file takes it (its docstring's XNNPACK recipe).
    quantization.use_hqq stays at its default (True): the 4-bit weights are HQQ-fitted, not
    plain min/max, which matters when comparing ids with another 8da4w program."""
    base = {"model_class": "llama3", "checkpoint": str(ckpt), "params": str(params)}
    if metadata:  # e.g. get_bos_id / get_eos_ids; else the runner asks the tokenizer
        base["metadata"] = json.dumps(metadata)
    return {
        "base": base,
        "model": {"use_kv_cache": True, "use_sdpa_with_kv_cache": True, "dtype_override": "fp32"},
        "export": {"max_seq_length": max_seq_len, "max_context_length": max_context_len or max_seq_len,
                   "output_dir": str(pte.parent), "output_name": str(pte)},
        "quantization": {"qmode": "8da4w", "group_size": group_size},
        "backend": {"xnnpack": {"enabled": True, "extended_ops": True}},
    }


def build_peer(hparams: dict | None, out_dir: Path, max_seq_len: int = 128, group_size: int = 32,
               metadata: dict | None = None, model=None, max_context_len: int | None = None) -> Path:
    """Export the peer .pte into out_dir and return its path (export_llm.log has the output).
    With `model` (a LlamaForCausalLM, e.g. zoo_model()) its weights are the peer's; hparams may
    then be None (they are read from its config). max_context_len (the KV cache) defaults to
    max_seq_len, as llm_program's does."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, params = write_checkpoint(hparams, out_dir, model)
    pte = out_dir / "peer.pte"
    cfg = out_dir / "export_llm.yaml"  # JSON is YAML; a file spares Hydra's quoting of metadata
    cfg.write_text(json.dumps(export_config(ckpt, params, pte, max_seq_len, group_size, metadata,
                                            max_context_len), indent=1))
    cmd = [sys.executable, "-m", "executorch.extension.llm.export.export_llm", "--config", str(cfg),
           f"hydra.run.dir={out_dir / 'hydra'}"]  # not ./outputs/<date> in the caller's cwd
    with open(out_dir / "export_llm.log", "w") as log:
        rc = subprocess.run(cmd, cwd=out_dir, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0 or not pte.exists():
        raise RuntimeError(f"export_llm failed ({rc}); see {out_dir / 'export_llm.log'}")
    return pte


def run_in_runner(pte: Path, tokenizer_json: Path, prompt: str, max_new_tokens: int,
                  ptd: Path | None = None) -> dict:
    """Greedy generation in ExecuTorch's C++ TextLLMRunner, with its own Stats."""
    # The .pte calls llama::custom_sdpa / update_cache: their kernels register on import.
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    runner = TextLLMRunner(str(pte), str(tokenizer_json), str(ptd) if ptd else None)
    # temperature=0 is argmax: Sampler sets inv_temperature 0 and takes sample_argmax; prefill's
    # first token is argmax regardless (extension/llm/sampler/sampler.cpp, text_prefiller).
    config = GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens, echo=False)
    pieces, stats = [], {}
    runner.generate(prompt, config, token_callback=pieces.append,
                    stats_callback=lambda s: stats.update(json.loads(s.to_json_string())))
    # The rates are the runner's own (Stats::to_json_string); its clock is in whole ms, so a
    # tiny model's decode rate is coarse unless many tokens are generated.
    return {"text": "".join(pieces), "pieces": pieces, "stats": stats,
            "decode_tokens_per_s": stats["decode_token_per_sec"],
            "prefill_tokens_per_s": stats["prefill_token_per_sec"]}


def greedy_ids(pte: Path, tokenizer_json: Path, prompt: str, max_new_tokens: int,
               stop_at_eos: bool = True) -> dict:
    """The runner's loop re-done through executorch.runtime: prefill once, then one token at a
    time with its input_pos, argmax each step, stopping after an id of get_eos_ids as the runner
    does. Prompt ids come from the runner's own C++ HF tokenizer (pytorch_tokenizers)."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (custom_sdpa kernels)
    import torch
    from executorch.runtime import Runtime
    from pytorch_tokenizers import CppHFTokenizer

    tok = CppHFTokenizer()
    tok.load(str(tokenizer_json))
    prompt_ids = tok.encode(prompt, 0, 0)  # GenerationConfig's num_bos=0, num_eos=0
    program = Runtime.get().load_program(Path(pte))
    eos = {i for name in ("get_eos_ids", "get_eos_id") if stop_at_eos and name in
           program.method_names for i in program.load_method(name).execute([])}
    forward = program.load_method("forward")
    # input_pos is [1] (start pos) in export_llm's .pte; a [T] cache_position in optimum's
    per_token_pos = list(program.metadata("forward").input_tensor_meta(1).sizes())[0] > 1
    tokens, pos, out = torch.tensor([prompt_ids]), 0, []
    while len(out) < max_new_tokens and not eos.intersection(out[-1:]):
        n = tokens.shape[1]
        at = torch.arange(pos, pos + n) if per_token_pos else torch.tensor([pos])
        logits = forward.execute([tokens, at])[0]
        pos += n
        out.append(int(logits.reshape(-1, logits.shape[-1])[-1].argmax()))
        tokens = torch.tensor([[out[-1]]])
    # piece by piece, as the runner's token_callback sees them
    return {"prompt_ids": prompt_ids, "ids": out, "text": "".join(tok.decode(i) for i in out)}


def pte_info(pte: Path) -> dict:
    """The program's methods: the constant metadata ones run with no inputs; forward's inputs."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(Path(pte))
    info = {"metadata": {}, "forward_inputs": []}
    for name in sorted(program.method_names - {"forward"}):
        values = list(program.load_method(name).execute([]))  # get_eos_ids returns a list
        info["metadata"][name] = values if name.endswith("_ids") else values[0]
    meta = program.metadata("forward")
    for i in range(meta.num_inputs()):
        t = meta.input_tensor_meta(i)  # sizes of a dynamic dim are its upper bound
        info["forward_inputs"].append({"dtype": SCALAR_TYPES.get(int(t.dtype()), t.dtype()),
                                       "sizes": list(t.sizes())})
    return info


def eager_parity(reference, out_dir: Path) -> float:
    """Max |logit diff| between the HF model (`reference`: the one the peer was built from) and
    ExecuTorch's eager llama_transformer loaded from the converted checkpoint (fp32, no quant):
    shows the weights really are the same."""
    import torch
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    params = json.loads((out_dir / "params.json").read_text())
    args = ModelArgs(max_seq_len=64, max_context_len=64, generate_full_logits=True, **params)
    et = construct_transformer(args).eval()
    missing, unexpected = et.load_state_dict(torch.load(out_dir / "checkpoint.pth"), strict=False)
    assert not [k for k in missing if k.endswith(".weight")] and not unexpected, (missing,
                                                                                  unexpected)
    ids = torch.randint(0, reference.config.vocab_size, (1, 16),
                        generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference(ids).logits
        got = et(ids)  # no KV cache: the plain causal forward over all 16 positions
        got = got[0] if isinstance(got, tuple) else got
    return float((ref - got.reshape(ref.shape)).abs().max())


def train_tokenizer(path: Path, vocab_size: int = 512, text: list[str] = DEMO_TEXT) -> Path:
    """A tiny byte-level BPE tokenizer.json (<s>=0, </s>=1), small enough for the tiny model.
    Its alphabet is only the bytes of `text` (ASCII), not all 256: a random model emits any id,
    and a piece that is a partial UTF-8 sequence makes TextLLMRunner's token_callback raise
    UnicodeDecodeError (pybind turns each std::string piece into a str)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"])
    tok.train_from_iterator(text * 8, trainer)
    tok.save(str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/llm_peer"))
    ap.add_argument("--max-new-tokens", type=int, default=100)
    ap.add_argument("--prompt", default="Pack my box")  # greedy ids hit no </s> within 100
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(args.out / "tokenizer.json")
    # The model's vocab is the tokenizer's: an argmax past the tokenizer's ids can't be decoded.
    from tokenizers import Tokenizer

    hp = {**TINY, "vocab_size": Tokenizer.from_file(str(tok)).get_vocab_size()}
    t0 = time.perf_counter()
    pte = build_peer(hp, args.out, metadata={"get_bos_id": 0, "get_eos_ids": [1]})
    build_s = time.perf_counter() - t0
    run = run_in_runner(pte, tok, args.prompt, args.max_new_tokens)
    ref = greedy_ids(pte, tok, args.prompt, args.max_new_tokens)
    report = {
        "build_s": round(build_s, 1), "pte_bytes": pte.stat().st_size,
        "hparams": hp, "eager_parity_max_abs": eager_parity(hf_model(hp), args.out), **pte_info(pte),
        "prompt_ids": ref["prompt_ids"], "greedy_ids": ref["ids"],
        # the runner hides its ids; equal text piece by piece says it took the same argmaxes
        "runner_text_matches_greedy_ids": ref["text"] == run["text"],
        "runner": {k: run[k] for k in ("text", "decode_tokens_per_s", "prefill_tokens_per_s",
                                       "stats")},
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, default=str))  # the runner has printed its text to stdout already


if __name__ == "__main__":
    main()
