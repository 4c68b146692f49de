"""Step `release`: pack verified artifacts, their test bundles, MANIFEST.json and the provenance
into one deterministic .tar.gz (rules/release/archive.py).

Everything in the archive is a function of the inputs and the config: no paths of this machine,
no times but SOURCE_DATE_EPOCH, no timings of the runs that made the artifacts.
"""
from __future__ import annotations

import json
from pathlib import Path

from buildsys.rule_api import toolchain

from ..lib.sizes import artifact_sizes
from ..release import archive as release_archive
from ..release import provenance
from ..values import Spec

MANIFEST = "MANIFEST.json"
PROVENANCE = "provenance.intoto.json"
SCHEMA = "modelbuild.release/v1"
# The distributions a release records (and its provenance lists as resolved dependencies).
TOOLCHAIN = ("modelbuild", "torch", "executorch", "torchao", "coremltools", "onnx", "onnxscript", "onnxruntime",
             "numpy", "safetensors")
# Timings differ from run to run; a manifest holding them could not be reproduced.
_TIMINGS = {"seconds", "artifact_seconds", "prefill_tokens_per_s", "decode_tokens_per_s"}
# Measured errors hold the rounding noise of the CPU that ran the checks (float32 kernels differ
# with the SIMD width), so the manifest keeps them only to the precision that carries meaning:
# SNR to 0.1 dB and capped (above FLOAT_EXACT_DB a float program differs by rounding alone),
# errors and scales to 2 and 4 significant digits.
FLOAT_EXACT_DB = 100.0
_SIGNIFICANT = {"max_abs_error": 2, "reference_rms": 4, "reference_max_abs": 4}


class ReleaseEntry(Spec):
    """One shipped artifact, as the release step is told of it."""

    label: str
    path: str  # in the archive
    input: str  # the release step's input holding the artifact
    format: str
    model: str
    sources: dict[str, str]  # workspace path -> sha256 of the model's sources
    data: dict[str, str]  # weights and data files
    declaration: dict
    quantize: str | None = None  # input holding the quantize step's metrics
    report: str | None = None  # input holding the verification report
    producer: str  # input holding the metrics of the step that wrote it
    bundle: str | None = None  # input holding its .bpte
    bundle_path: str | None = None
    bundle_check: str | None = None  # input holding the bundle step's metrics
    companions: dict[str, str] = {}  # archive path -> input: files shipped beside it (a .ptd, a tokenizer)


class ReleaseConfig(Spec):
    label: str
    version: str
    epoch: int  # the archive entries' mtime
    revision: dict  # the workspace's version control state
    entries: list[ReleaseEntry]
    signed: bool = False  # the input "sign_key" holds an ed25519 private key


def _significant(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def _stable(value):
    """A step's report as the manifest keeps it: no timings, measurements at meaningful precision."""
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in _TIMINGS:
            continue
        if k.endswith("snr_db") and isinstance(v, (int, float)):  # snr_db, a language model's min_logits_snr_db
            out[k] = min(round(v, 1), FLOAT_EXACT_DB)
        elif k.endswith("snr_db") and isinstance(v, list):  # per generated token
            out[k] = [min(round(x, 1), FLOAT_EXACT_DB) for x in v]
        elif k in _SIGNIFICANT and isinstance(v, float):
            exact = isinstance(value.get("snr_db"), (int, float)) and value["snr_db"] >= FLOAT_EXACT_DB
            if k == "max_abs_error" and exact:
                continue  # float rounding noise, different on every CPU
            out[k] = _significant(v, _SIGNIFICANT[k])
        else:
            out[k] = _stable(v)
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _files_of(path: Path, name: str) -> dict[str, Path | None]:
    """An artifact as archive entries: a file, or a directory's files and empty directories (None)."""
    if path.is_dir():
        return {f"{name}/{p.relative_to(path).as_posix()}": p if p.is_file() else None for p in sorted(path.rglob("*"))
                if p.is_file() or (p.is_dir() and not any(p.iterdir()))}
    return {name: path}


def _entry(ctx, e: ReleaseEntry, files: dict[str, Path | bytes], digests: dict[str, str]) -> dict:
    path = ctx.input_path(e.input)
    own = _files_of(path, e.path)
    files.update(own)
    files.update({name: ctx.input_path(i) for name, i in e.companions.items()})
    sizes = artifact_sizes(path, "pte" if e.format == "llm" else e.format)
    producer = _json(ctx.input_path(e.producer))
    item = {
        "label": e.label,
        "path": e.path,
        "format": e.format,
        "size": sum(p.stat().st_size for p in own.values() if p is not None),
        "sizes": sizes,
        "model": {"label": e.model, "sources": e.sources, "sources_sha256": release_archive.sha256(
            json.dumps(sorted(e.sources.items())).encode()), "data": e.data},
        "declaration": e.declaration,
        "backends": {"declared": e.declaration.get("backends", []), "delegation": producer.get("delegation")},
        "quantization": None,
    }
    if path.is_dir():  # a directory's digest: of its sorted (path, sha256) list
        item["tree_sha256"] = release_archive.sha256(json.dumps(sorted(
            (name.removeprefix(e.path + "/"), digests[name]) for name, p in own.items() if p is not None)).encode())
        item["files"] = sum(1 for p in own.values() if p is not None)
    else:
        item["sha256"] = digests[e.path]
    declared = e.declaration.get("quantize") or e.declaration.get("compress")
    if declared is not None:
        coverage = _json(ctx.input_path(e.quantize)).get("coverage") if e.quantize else None
        item["quantization"] = {"declared": declared, "coverage": coverage}
    item["verification"] = ({"passed": True, **_stable(_json(ctx.input_path(e.report)))} if e.report
                            else {"passed": None, "note": "not verified (verify = False)"})
    warnings = list(producer.get("warnings", []))
    if e.bundle:
        bundle = ctx.input_path(e.bundle)
        files[e.bundle_path] = bundle
        check = _json(ctx.input_path(e.bundle_check)).get("bundle", {})
        check.pop("max_abs_error", None)  # the worst case's, which the cases list at a stable precision
        item["bundle"] = {"path": e.bundle_path, "sha256": digests[e.bundle_path], "size": bundle.stat().st_size,
                          **_stable(check)}
    if e.format == "llm":
        item["llm"] = _llm(ctx, e, producer, item["verification"])
    if warnings:
        item["warnings"] = warnings
    return item


def _llm(ctx, e: ReleaseEntry, producer: dict, verification: dict) -> dict:
    """A language model's runner metadata, its files, and what its generation check found."""
    weights = [ctx.input_path(i).stat().st_size for n, i in e.companions.items() if n.endswith(".ptd")]
    generation = {k: v for k, v in verification.items() if k in (
        "token_agreement", "identical_prefix", "min_logits_snr_db", "logits_snr_db", "eager_tokens", "program_tokens")}
    return {"metadata": producer.get("metadata"), "files": sorted(e.companions), "generation": generation,
            "sizes": {"program_bytes": ctx.input_path(e.input).stat().st_size, "weights_bytes": sum(weights)}}


def _digests(ctx, cfg: ReleaseConfig) -> dict[str, str]:
    out = {}
    for e in cfg.entries:
        for name, p in _files_of(ctx.input_path(e.input), e.path).items():
            if p is not None:
                out[name] = release_archive.sha256(p.read_bytes())
        if e.bundle:
            out[e.bundle_path] = release_archive.sha256(ctx.input_path(e.bundle).read_bytes())
        for name, i in e.companions.items():
            out[name] = release_archive.sha256(ctx.input_path(i).read_bytes())
    return out


def run(ctx) -> dict:
    cfg: ReleaseConfig = ctx.config
    files: dict[str, Path | bytes] = {}
    digests = _digests(ctx, cfg)
    artifacts = [_entry(ctx, e, files, digests) for e in cfg.entries]
    tools = toolchain(TOOLCHAIN)
    name = cfg.label.rpartition(":")[2]
    release = {"label": cfg.label, "name": name, "version": cfg.version, "epoch": cfg.epoch}
    manifest = {
        "schema": SCHEMA,
        "release": release,
        "source": cfg.revision,
        "toolchain": tools,
        "artifacts": artifacts,
        "files": {n: {"sha256": digests[n], "size": len(f) if isinstance(f, bytes) else f.stat().st_size}
                  for n, f in sorted(files.items()) if f is not None},
    }
    files[MANIFEST] = provenance.dumps(manifest)
    subjects = {**digests, MANIFEST: release_archive.sha256(files[MANIFEST])}
    statement = provenance.dumps(provenance.statement(subjects, release, cfg.revision, tools))
    if cfg.signed:
        key_path = ctx.source_paths("sign_key")[0]
        statement = provenance.sign(statement, provenance.load_private_key(key_path))
    files[PROVENANCE] = statement
    out = ctx.output_path("release.tar.gz")
    release_archive.write(out, files, cfg.epoch)
    warnings = []
    if cfg.revision.get("dirty"):
        warnings.append(f"the workspace has changes not committed to git: the provenance names commit "
                        f"{cfg.revision.get('commit')} with dirty = true, and another clone of that commit builds "
                        "a different release")
    summary = {"artifacts": len(artifacts), "files": len(files), "bytes": out.stat().st_size,
               "sha256": release_archive.sha256(out.read_bytes()), "signed": cfg.signed,
               "bundles": sum(1 for a in artifacts if "bundle" in a)}
    for warning in warnings:
        ctx.warn(warning)
    return {"release": summary}
