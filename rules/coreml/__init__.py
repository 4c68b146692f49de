"""Core ML: its options, reading MIL and checking compressed weights, the reproducible package
identity, the ExecuTorch delegate's payload, and the .mlpackage's structure."""
