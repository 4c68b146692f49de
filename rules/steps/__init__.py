"""One module per step kind (rules.steps.<name>): its config beside its run(ctx), which only workers
call; run() imports the toolchain it needs."""
