"""The modelbuild engine: labels, packages, graphs, digests, caches and worker processes.

Nothing here imports torch, executorch or coremltools: loading, planning, querying and a
no-op build must stay fast. The toolchain lives in `rules/`, and runs inside workers.
"""
