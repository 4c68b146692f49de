"""Helpers the steps share: loading and saving programs, the model and its example inputs, the
runtimes that run artifacts, sizes, and the quantization helpers."""
