"""`modelbuild` / `python -m modelbuild`: the composition root. The engine imports no rules; this
module hands it the rule set."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A no-op first, as ninja does it: stat what the last build read; nothing heavier is imported.
    from buildsys.cli.noop import answered, up_to_date

    if argv[:1] == ["build"] and (code := up_to_date(argv)) is not None:
        return code
    if argv[:1] == ["query"] and (code := answered(argv)) is not None:
        return code
    from buildsys.cli.main import main as run
    from rules import RULESET  # importing the rules loads no toolchain

    return run(RULESET, argv)


if __name__ == "__main__":
    sys.exit(main())
