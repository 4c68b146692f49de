"""Releases: the archive and its manifest, signed provenance, the check of a shipped archive, and
the `verify-release` command."""
