"""The `build` flags for where actions run and which remote cache they share: parsed and checked
here, before any work, into BuildOptions fields."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import FlagError, UserError

REMOTE_ENV = "MODELBUILD_REMOTE_CACHE"
REMOTE_KEY_ENV = "MODELBUILD_REMOTE_CACHE_KEY"


def add_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where actions run: worker processes here (default), or a Ray cluster")
    b.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster for --executor ray: host:port of its head, or ray://host:port of its Ray Client "
                        "server (default: $RAY_ADDRESS, else a local Ray started for the build)")
    b.add_argument("--remote-cache", metavar="URL",
                   help=f"a shared cache speaking Bazel's HTTP protocol (default: ${REMOTE_ENV}); credentials "
                        "come from $MODELBUILD_REMOTE_CACHE_HEADER")
    b.add_argument("--no-remote-upload", action="store_true",
                   help="read the remote cache, never write it (developers read, CI writes)")
    b.add_argument("--remote-cache-key", metavar="PEM",
                   help=f"ed25519 key (default: ${REMOTE_KEY_ENV}): a private key signs what is uploaded; a private or "
                        "public key refuses unsigned or badly signed records")


def executor_options(args) -> dict:
    if args.ray_address and args.executor != "ray":
        raise UserError("--ray-address is for --executor ray; add --executor ray, or drop --ray-address")
    return {"executor": args.executor, "ray_address": args.ray_address}


def remote_options(args) -> dict:
    url = args.remote_cache or os.environ.get(REMOTE_ENV) or None
    key = args.remote_cache_key or os.environ.get(REMOTE_KEY_ENV) or None
    if url is None:
        if args.no_remote_upload or args.remote_cache_key:
            raise UserError("--no-remote-upload and --remote-cache-key need a remote cache: add --remote-cache URL "
                            f"(or set ${REMOTE_ENV})")
        return {}
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = url if not parts.password else url.replace(parts.password, "***")
        raise FlagError("--remote-cache", shown, "expected an http:// or https:// URL of a Bazel-protocol HTTP cache "
                        "(bazel-remote, nginx with WebDAV, ...)")
    if key is not None and not Path(key).is_file():
        raise FlagError("--remote-cache-key", key, "no such file (expected an ed25519 key in PEM)")
    return {"remote_cache": url.rstrip("/"), "remote_upload": not args.no_remote_upload,
            "remote_cache_key": Path(key).resolve() if key else None}
