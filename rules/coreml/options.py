"""Core ML options as coremltools takes them, from the BUILD.models values (values.py) that name them."""
from __future__ import annotations


def coreml_options(compute_units: str, precision: str, target: str) -> dict:
    """The coremltools enums for these options (imports coremltools: call it in a worker)."""
    import coremltools as ct

    return {
        "compute_units": getattr(ct.ComputeUnit, compute_units.upper()),
        "compute_precision": getattr(ct.precision, precision.upper()),
        "minimum_deployment_target": getattr(ct.target, target),
    }
