"""Step `coreml_compress`: compress a Core ML .mlpackage's weights with coremltools.optimize.coreml.

Two schemes, chosen by `compression.scheme`:
  - "linear": int8 linear symmetric quantization, one scale per output channel
    (OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel"));
  - "palettize": k-means palettization with a 2**nbits-entry lookup table per tensor
    (OpPalettizerConfig(mode="kmeans", nbits=...)), nbits in {2, 4, 6, 8}.

Only weights of rank >= 2 with more than `weight_threshold` elements are compressed (biases
never are: coremltools skips rank-1 tensors). The default, 256, is well under coremltools' own
2048, which leaves a small model (a 32x64 Linear has 2048 elements) uncompressed. Below about
256 elements a tensor saves at most a few hundred bytes, and per-tensor overhead (64-byte
aligned blobs, per-channel scales, a lookup table of up to 256 entries) eats that: an 8-bit
palette of a 256-element float16 tensor makes weight.bin bigger, and int8 merely breaks even.

The output is verified numerically on Linux by rules.coreml.weights_check.compare_compressed_weights.
Saving makes a new package (new UUIDs, a new conversion date): it is normalized as
coreml_convert's is (rules.coreml.identity).
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ..values import Spec

WEIGHTS = "Data/com.apple.CoreML/weights/weight.bin"
IOS16_SPEC = 7  # constexpr ops (compressed weights) need iOS16 / macOS13 or later


class LinearQuantization(Spec):
    """Core ML weight compression to int8, linear (coremltools.optimize)."""

    scheme: Literal["linear"] = "linear"
    dtype: Literal["int8"] = "int8"
    granularity: Literal["per_channel"] = "per_channel"


class Palettization(Spec):
    """Core ML weight compression to a palette of 2**nbits values (k-means, coremltools.optimize)."""

    scheme: Literal["palettize"] = "palettize"
    nbits: Literal[2, 4, 6, 8]


Compression = Annotated[Union[LinearQuantization, Palettization], Field(discriminator="scheme")]


class CoremlCompressConfig(Spec):
    compression: Compression
    # compress a weight only if it has more elements than this (coremltools' own default: 2048)
    weight_threshold: int = Field(default=256, ge=0)


def op_config(cfg: CoremlCompressConfig):
    """The coremltools OptimizationConfig for this step's config."""
    import coremltools.optimize.coreml as cto

    c = cfg.compression
    if isinstance(c, LinearQuantization):
        op = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype=c.dtype, granularity=c.granularity, weight_threshold=cfg.weight_threshold
        )
    else:
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=c.nbits, weight_threshold=cfg.weight_threshold)
    return cto.OptimizationConfig(global_config=op)


def _tree_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _weight_bytes(package) -> int:
    f = package / WEIGHTS
    return f.stat().st_size if f.exists() else 0  # a model whose weights all fit inline has no weight.bin


def _source_model(src):
    """The input package, once it is known to be an ML program that compressed weights can target."""
    import coremltools as ct

    from ..errors import StepError

    if not (src / "Manifest.json").is_file():
        raise StepError(f"input {src.name} is not an .mlpackage directory")
    model = ct.models.MLModel(str(src), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise StepError(
            f"weight compression needs an ML program (.mlpackage), not a {spec.WhichOneof('Type')} model"
        )
    if spec.specificationVersion < IOS16_SPEC:
        # coremltools would silently raise the package's deployment target to iOS16.
        raise StepError(
            f"compressed weights need minimum_deployment_target iOS16 / macOS13 or later; "
            f"this package targets specification version {spec.specificationVersion} (iOS15 / macOS12)"
        )
    return model


def _compress(model, cfg: CoremlCompressConfig, out) -> float:
    """Write the compressed package to out; how long coremltools took."""
    import shutil
    import time

    import coremltools.optimize.coreml as cto

    from ..coreml.identity import normalize_package

    started = time.monotonic()
    if isinstance(cfg.compression, LinearQuantization):
        compressed = cto.linear_quantize_weights(model, op_config(cfg))
    else:
        compressed = cto.palettize_weights(model, op_config(cfg))
    seconds = time.monotonic() - started
    # The result lives in a temporary package that coremltools deletes only at interpreter exit;
    # save() copies it, so remove it now or a long-lived worker fills /tmp.
    try:
        compressed.save(str(out))
    finally:
        if compressed.is_temp_package and compressed.package_path:
            shutil.rmtree(compressed.package_path, ignore_errors=True)
    normalize_package(out)
    return seconds


def _weight_errors(src, out, cfg: CoremlCompressConfig) -> tuple[list[str], list[float], int]:
    """(the consts compressed, each one's SNR against the input package's own value, the weights of
    rank >= 2 left uncompressed); a compression that changed nothing is a declaration mistake."""
    from ..coreml.mil import (
        canonical_name,
        decompressed_weights,
        load_mil,
        weight_consts,
    )
    from ..coreml.weights_check import snr_db
    from ..errors import StepError

    original = weight_consts(load_mil(src)[1])
    by_canonical = {canonical_name(n): v for n, v in original.items()}
    values, names = decompressed_weights(out)
    if not names:  # as quantize does
        sizes = sorted((int(v.size) for v in original.values() if v.ndim >= 2), reverse=True)
        largest = f"the largest has {sizes[0]} elements" if sizes else "it has no weight of rank 2 or more"
        raise StepError(
            f"compression changed nothing: no weight has more than weight_threshold = "
            f"{cfg.weight_threshold} elements ({largest}); lower weight_threshold or drop compress"
        )
    snrs = [snr_db(by_canonical[canonical_name(n)], values[n]) for n in names if canonical_name(n) in by_canonical]
    done = {canonical_name(n) for n in names}
    skipped = sum(1 for n, v in original.items() if v.ndim >= 2 and v.size >= 10 and canonical_name(n) not in done)
    return names, snrs, skipped


def run(ctx) -> dict:
    import statistics

    cfg: CoremlCompressConfig = ctx.config
    src = ctx.input_path("package")
    out = ctx.output_path("model.mlpackage")
    seconds = _compress(_source_model(src), cfg, out)
    names, snrs, skipped = _weight_errors(src, out, cfg)
    before, after = _weight_bytes(src), _weight_bytes(out)
    return {
        "scheme": cfg.compression.scheme,
        "nbits": getattr(cfg.compression, "nbits", 8),
        "weight_threshold": cfg.weight_threshold,
        "weight_bin_bytes_before": before,
        "weight_bin_bytes_after": after,
        "weight_bin_ratio": round(after / before, 4) if before else None,
        "package_bytes_before": _tree_bytes(src),
        "package_bytes_after": _tree_bytes(out),
        "compressed_consts": len(names),
        "uncompressed_weight_consts": skipped,  # rank >= 2 but at or below weight_threshold
        "weight_snr_db_min": round(min(snrs), 2) if snrs else None,
        "weight_snr_db_median": round(statistics.median(snrs), 2) if snrs else None,
        "compress_seconds": round(seconds, 3),
    }
