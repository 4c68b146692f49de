"""modelbuild's entry point: the engine (buildsys) with the rules (rules) wired in."""
