"""Imported first by the workers' fork server (pool.py), for its side effect: the server gets SIGKILL
when the engine that started it dies, even while it is still importing the toolchain, and so (each
by its own parent-death signal) do the workers forked from it. The server must be started from the
engine's main thread: the signal fires when the thread that started the process ends."""
import signal

from .worker_main import signal_on_parent_death

signal_on_parent_death(signal.SIGKILL)
