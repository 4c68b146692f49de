"""Entry point of a worker process: `python -m buildsys.worker_boot FD module:function WORKSPACE`.

The engine talks to a worker over a socket (FD), so the worker's own stdout and stderr stay
free to be captured into each action's log.
"""
from __future__ import annotations

import importlib
import sys
from multiprocessing.connection import Connection


def main() -> None:
    fd, entry, workspace = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    module, _, function = entry.partition(":")
    serve = getattr(importlib.import_module(module), function)
    serve(Connection(fd), workspace)


if __name__ == "__main__":
    main()
