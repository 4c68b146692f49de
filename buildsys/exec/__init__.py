"""Execution: the scheduler and the executors it hands requests to (executor.py, as ninja's
CommandRunner): the local pool of long-lived workers (local, pool, worker_main) and Ray (ray,
ray_transport)."""
