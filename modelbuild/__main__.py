"""`modelbuild` / `python -m modelbuild`: the composition root. The engine imports no rules; this
module hands it the rule set."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from buildsys.cli.main import main as run
    from rules import RULESET  # importing the rules loads no toolchain

    return run(RULESET, argv)


if __name__ == "__main__":
    sys.exit(main())
