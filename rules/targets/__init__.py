"""The target kinds BUILD.models may call: each validates its declaration and plans its steps. They
run in the engine's process at plan time, so nothing here imports the toolchain, even in a function."""
