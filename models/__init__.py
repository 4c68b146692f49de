"""Example model sources for the example workspace (see BUILD.models)."""
