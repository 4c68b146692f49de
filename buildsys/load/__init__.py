"""Loading: from BUILD.models files to the target graph. The workspace and its packages, the
Starlark evaluator (a bounded child process) and its parent's side (loader), validated
declarations, the target graph, the Python import scan of model modules, and the revision."""
