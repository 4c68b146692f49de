"""The `modelbuild` command: build, query, show, clean."""
from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..cache.layout import CACHE_ENV, cache_dir
from ..errors import FlagError, UserError
from ..load.workspace import Workspace
from ..rule_api import RuleSet
from ..units import count, human_bytes
from . import noop


def _cache_dir(args, workspace: Workspace) -> Path:
    return cache_dir(args.cache_dir, workspace.root)


def _here(workspace: Workspace) -> str:
    """The package of the current directory, which relative labels name ("" at the root)."""
    try:
        return Path.cwd().resolve().relative_to(workspace.root.resolve()).as_posix().strip(".")
    except ValueError:
        return ""


def _patterns(args, workspace: Workspace) -> list[str]:
    from ..labels import absolute

    here = _here(workspace)
    return [absolute(text, here) for text in args.patterns] or ["//..."]


def cmd_build(args, console: Console) -> int:
    from ..build import BuildOptions
    from .flags import executor_options, remote_options

    workspace = Workspace.find()
    options = BuildOptions(
        patterns=_patterns(args, workspace),
        cache_dir=_cache_dir(args, workspace),
        jobs=args.jobs,
        keep_going=args.keep_going,
        build_events=Path(args.build_events).resolve() if args.build_events else None,
        profile=Path(args.profile).resolve() if args.profile else None,
        explain=args.explain,
        retry_failed=args.retry_failed,
        settings=_settings(args),
        **executor_options(args),
        **remote_options(args),
    )
    stamped = not (options.build_events or options.profile or options.explain or options.remote_cache or options.settings
                   or options.executor != "local" or args.announce_rc)  # each of these asks for more than a summary
    started_ns, before = time.time_ns(), noop.snapshot(workspace.root) if stamped else {}
    summary = Host(args, console).run_build(workspace, options)
    if summary.ok and stamped:
        noop.write(args.argv, Path.cwd(), workspace.root, options.cache_dir, before, started_ns, summary.read,
                   [*summary.placed.values(), *(p for ps in summary.companions.values() for p in ps)], len(summary.targets), len(summary.state.outcomes),
                   [(_source(outcome), text) for outcome, text in summary.state.warnings()])
    else:
        noop.forget(args.argv, Path.cwd(), workspace.root, options.cache_dir)
    return 0 if summary.ok else 1


def _source(outcome) -> str:
    return f"{', '.join(sorted(str(o) for o in outcome.action.owners))} ({outcome.action.step})"


def _settings(args) -> dict:
    """Build-wide settings the rules read, from the flags the rule set added; checked here, before any work."""
    settings = {}
    for flag in args.ruleset.flags:
        value = getattr(args, flag.setting)
        if value is None:
            continue
        try:
            settings[flag.setting] = flag.parse(value)
        except ValueError as err:
            raise FlagError(flag.option, None, str(err)) from None
    return settings


class Host:
    """What a rule set's own command may do through the engine: find the workspace, build."""

    def __init__(self, args, console: Console):
        self.args, self.console = args, console

    def workspace(self) -> Workspace:
        return Workspace.find()

    def run_build(self, workspace: Workspace, options):
        from ..build import build
        from .console import BuildConsole

        with BuildConsole(self.console, self.args.verbose) as ui:
            summary = build(workspace, self.args.ruleset, options, ui.on_progress)
        ui.summary(summary)
        return summary

    def build(self, patterns: list[str], cache_dir: Path, out_dir: Path, jobs: int) -> list[Path] | None:
        """Build the patterns into out_dir with that cache, showing progress; the placed artifacts, or
        None if the build failed."""
        from ..build import BuildOptions

        options = BuildOptions(patterns=patterns, cache_dir=cache_dir, jobs=jobs, out_dir=out_dir)
        summary = self.run_build(self.workspace(), options)
        return list(summary.placed.values()) if summary.ok else None


def cmd_query(args, console: Console) -> int:
    from ..load.target_graph import TargetGraph

    workspace = Workspace.find()
    if args.actions:
        return query_actions(args, workspace, console)
    if args.rdeps or args.affected_since:
        return query_affected(args, workspace)
    started_ns, before = time.time_ns(), noop.snapshot(workspace.root) if args.output == "label" else {}
    graph = TargetGraph(workspace, args.ruleset)
    labels = graph.expand(_patterns(args, workspace))
    if args.deps:
        labels = sorted(set(labels) | {d for l in labels for d in graph.deps(l)})
    if args.output == "label":  # plain lines, for scripts (and one write: rich per line costs 0.3 ms each)
        output = "".join(f"{label}\n" for label in labels)
        sys.stdout.write(output)
        # The same query, nothing changed, prints this again from the stamp (noop.answered).
        noop.write_query(args.argv, Path.cwd(), workspace.root, _cache_dir(args, workspace), before, started_ns, output)
        return 0
    lines = [f"{graph.targets[l].kind:<22} {escape(str(l))}  [dim]{escape(str(graph.targets[l].location))}[/]" for l in labels]
    if lines:
        console.print("\n".join(lines), highlight=False, soft_wrap=True)
    return 0


def cmd_show(args, console: Console) -> int:
    from ..cache.stores import Stores
    from .show import show

    from ..labels import absolute

    workspace = Workspace.find()
    stores = Stores(_cache_dir(args, workspace))
    try:
        return show(workspace, args.ruleset, absolute(args.label, _here(workspace)), stores, console)
    finally:
        stores.close()


def query_affected(args, workspace: Workspace) -> int:
    """--rdeps and --affected-since: labels, one per line, for a CI job to build."""
    from ..cache.stores import Stores
    from . import affected

    if args.patterns:
        raise UserError("--rdeps and --affected-since look at the whole workspace: give no patterns")
    stores = Stores(_cache_dir(args, workspace))
    try:
        universe = affected.Universe(workspace, args.ruleset, stores)
        found = set(affected.rdeps(universe, args.rdeps, _here(workspace))) if args.rdeps else None
        if args.affected_since:
            since = set(affected.affected_since(universe, args.ruleset, args.affected_since))
            found = since if found is None else found & since
    finally:
        stores.close()
    sys.stdout.write("".join(f"{label}\n" for label in sorted(found)))
    return 0


def query_actions(args, workspace: Workspace, console: Console) -> int:
    """The action graph the patterns need (like `bazel aquery`): steps, ids, inputs, owners."""
    from ..build import load_and_plan
    from ..cache.stores import Stores
    from ..rule_api import Sources

    stores = Stores(_cache_dir(args, workspace))
    try:
        _, labels, planner = load_and_plan(workspace, args.ruleset, _patterns(args, workspace), stores)
        for aid in planner.actions_for(labels):
            action = planner.actions[aid]
            inputs = ", ".join(
                f"{name}={len(v.files)} files" if isinstance(v, Sources)
                else f"{name}={planner.actions[v.action].step}:{v.action[:12]}"
                for name, v in action.inputs.items()
            )
            owners = " ".join(sorted(str(o) for o in action.owners))
            console.print(f"{action.step:<15} {aid[:12]}  {escape(inputs)}  [dim]{escape(owners)}[/]",
                          highlight=False, soft_wrap=True)
    finally:
        stores.close()
    return 0


def cmd_graph(args, console: Console) -> int:
    from ..cache.stores import Stores
    from . import graph

    workspace = Workspace.find()
    stores = Stores(_cache_dir(args, workspace))
    try:
        nodes, edges = graph.nodes_and_edges(workspace, args.ruleset, _patterns(args, workspace), stores, args.actions)
    finally:
        stores.close()
    patterns = " ".join(args.patterns) or "//..."
    text = graph.render(args.format, nodes, edges, f"modelbuild graph {patterns}" + (" --actions" if args.actions else ""))
    if args.output:
        Path(args.output).write_text(text)
        console.print(f"wrote {args.output}: {len(nodes)} nodes, {len(edges)} edges")
    else:
        sys.stdout.write(text)
    return 0


def cmd_help(args, console: Console) -> int:
    from . import help

    sys.stdout.write("".join(f"{line}\n" for line in help.run(args.ruleset, args.name)))
    return 0


def cmd_clean(args, console: Console) -> int:
    workspace = Workspace.find()
    from ..out_tree import default_out  # out_tree loads the cache's record types: not for query

    out = default_out(workspace.root)
    if out.exists():
        shutil.rmtree(out)
        console.print(f"removed {out}")
    else:
        console.print(f"nothing to remove: there is no {out}")
    if args.cache:
        cache = _cache_dir(args, workspace)
        # Keep the tracked README of the default cache directory; remove everything else.
        for child in cache.iterdir() if cache.is_dir() else []:
            if child.name != "README.md":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        console.print(f"emptied {cache}")
    return 0


def _gc_inputs(args, console: Console):
    """The stores and the digests out/ holds; outside a workspace (a --cache-dir of its own), nothing is held."""
    from ..cache.layout import Layout
    from ..cache.stores import Stores
    from ..out_tree import OutTree, default_out

    try:
        workspace = Workspace.find()
    except UserError:
        if cache_dir(args.cache_dir, None) is None:
            raise
        workspace = None
    cache = cache_dir(args.cache_dir, workspace.root if workspace else None)
    if not Layout(cache).exists():
        raise UserError(f"no cache at {cache} (nothing has been built with it)")
    stores = Stores(cache)
    if workspace is None:
        console.print("[dim]not in a workspace: no out/ tree to keep[/]")
        return stores, set()
    return stores, OutTree(default_out(workspace.root), stores.cas, stores.digests, stores.layout.outputs).held_digests()


def cmd_cache_gc(args, console: Console) -> int:
    from ..cache.gc import collect
    from ..units import SIZE_EXAMPLES, parse_size

    try:
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError:
        raise FlagError("--max-size", repr(args.max_size), f"expected a size such as {SIZE_EXAMPLES}") from None
    if max_size is None and args.older_than is None:
        raise UserError("cache gc: say what to remove: --max-size SIZE (e.g. 5G), --older-than DAYS, or both")
    if args.older_than is not None and args.older_than < 0:
        raise FlagError("--older-than", args.older_than, "expected a number of days, 0 or more")
    began = time.monotonic()
    stores, held = _gc_inputs(args, console)
    try:
        r = collect(stores.layout, stores.cas, held, max_size, args.older_than)
    finally:
        stores.close()
        stores.cas.close()
    console.print(f"removed {count(r.removed, 'blob')} ({human_bytes(r.removed_bytes)}) from {stores.cas.root} "
                  f"in {time.monotonic() - began:.2f}s; {count(r.kept, 'blob')} ({human_bytes(r.kept_bytes)}) remain",
                  soft_wrap=True)
    if r.stamps_removed:
        console.print(f"removed {count(r.stamps_removed, 'no-op stamp')} of commands not run lately", soft_wrap=True)
    kept = [f"{count(r.held, 'blob')} ({human_bytes(r.held_bytes)}) that out/ holds"] if r.held else []
    if r.in_use:
        kept.append(f"{count(r.in_use, 'blob')} ({human_bytes(r.in_use_bytes)}) used "
                    + (f"since the {count(r.builds_running, 'running build')} started" if r.builds_running
                       else "in the last seconds"))
    if kept:
        console.print(f"kept whatever the limits: {'; '.join(kept)}", soft_wrap=True)
    if max_size is not None and r.kept_bytes > max_size:
        console.print(f"[yellow]the cache stays above --max-size {human_bytes(max_size)}[/]: what remains is held by "
                      f"out/ or in use", soft_wrap=True)
    return 0


def cmd_cache_stats(args, console: Console) -> int:
    from ..cache.gc import stats

    stores, held = _gc_inputs(args, console)
    try:
        s = stats(stores.dir, stores.cas, held)
        entries = len(stores.action_cache)
    finally:
        stores.close()
        stores.cas.close()

    def age(ns: int | None) -> str:
        hours = (time.time_ns() - ns) / 3_600e9 if ns is not None else 0
        return "-" if ns is None else f"{hours:.1f} hours ago" if hours < 48 else f"{hours / 24:.1f} days ago"

    console.print(f"cache {stores.dir}", soft_wrap=True)
    console.print(f"  CAS: {count(s.blobs, 'blob')}, {human_bytes(s.blob_bytes)}; least recently used {age(s.oldest_use_ns)}, "
                  f"most recently {age(s.newest_use_ns)}", soft_wrap=True)
    console.print(f"  held by out/: {count(s.held, 'blob')}, {human_bytes(s.held_bytes)}")
    console.print(f"  action cache: {entries} entries")
    for name, size in s.parts.items():
        console.print(f"  {name}/: {human_bytes(size)}")
    if s.builds_running:
        console.print(f"  {s.builds_running} other process(es) have the cache open now")
    return 0


_WORKER_GIB = 2  # a worker exporting and lowering a mid-size model peaks near 1-2 GiB


def default_jobs() -> int:
    """One worker per core this process may use, fewer if the memory available now cannot hold them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpucount() or 1
    try:
        with open("/proc/meminfo") as meminfo:
            kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):  # not Linux: the cores alone
        return cores
    return max(1, min(cores, kib // (_WORKER_GIB << 20)))


def version() -> str:
    """modelbuild's version and the toolchain's, from package metadata (nothing is imported)."""
    from importlib import metadata

    def of(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    tools = ", ".join(f"{name} {of(name)}" for name in ("torch", "executorch", "coremltools"))
    return f"modelbuild {of('modelbuild')} (Python {sys.version.split()[0]}; {tools})"


class _Version(argparse.Action):
    """argparse's own would wrap the line to the terminal's width."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


PATTERNS_HELP = ("//..., //pkg/..., //pkg:all or //pkg:name; relative to the current directory's package: "
                 ":name, name, ..., sub/... (default //...)")


def parser(ruleset: RuleSet) -> argparse.ArgumentParser:
    # Global flags go before or after the subcommand: each subparser knows them too, and leaves
    # what was given before it alone (SUPPRESS: no default of its own). A subparser's values
    # replace the main parser's, so --config before the command collects under another name and
    # main() joins the two lists.
    common = _global_flags("config")
    p = argparse.ArgumentParser(prog="modelbuild", description="Build model artifacts declared in BUILD.models files.",
                                parents=[_global_flags("config_before_command")])
    p.commands = {}  # name -> its parser (main() gives verbose and config their defaults: set_defaults
    # here would set them on the action objects the subcommands share, and undo a flag given before them)
    p.add_argument("--version", action=_Version, help="print the versions of modelbuild and the toolchain")
    sub = _knowing(p.add_subparsers(dest="command", required=True), common, p.commands)

    b = sub.add_parser("build", help="build targets (default //...)")
    b.add_argument("patterns", nargs="*", help=PATTERNS_HELP)
    jobs = default_jobs()
    b.add_argument("-j", "--jobs", type=int, default=jobs,
                   help=f"worker processes (default: one per core while each has {_WORKER_GIB} GiB of available memory: {jobs} here)")
    b.add_argument("-k", "--keep-going", action="store_true", help="build what does not depend on a failure")
    b.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    b.add_argument("--build-events", metavar="FILE", help="write one JSON line per action to FILE")
    b.add_argument("--profile", metavar="FILE",
                   help="write a Chrome trace of the build to FILE (a row per worker; open it in ui.perfetto.dev)")
    b.add_argument("--explain", action="store_true", help="say why each action ran (like ninja -d explain)")
    b.add_argument("--announce-rc", action="store_true",
                   help="say which options came from .modelbuildrc or ~/.modelbuildrc, and which the command line "
                        "or the environment overrode")
    b.add_argument("--retry-failed", action="store_true",
                   help="rerun actions that failed before with the same inputs (by default their failure is replayed)")
    for flag in ruleset.flags:
        b.add_argument(flag.option, dest=flag.setting, metavar=flag.metavar, help=flag.help)
    from .flags import add_arguments

    add_arguments(b)
    b.set_defaults(run=cmd_build)

    for command in ruleset.commands:
        c = sub.add_parser(command.name, help=command.help)
        command.arguments(c)
        c.set_defaults(run=lambda args, console, command=command: command.run(args, console, Host(args, console)))


    _inspection_commands(sub, common)
    return p


def _global_flags(config_dest: str) -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                       help="full action logs, and the traceback of an internal error")
    flags.add_argument("--config", action="append", metavar="NAME", default=argparse.SUPPRESS, dest=config_dest,
                       help="also apply the 'COMMAND:NAME' lines of .modelbuildrc and ~/.modelbuildrc (repeatable)")
    return flags


def _knowing(sub, common: argparse.ArgumentParser, registry: dict | None = None):
    """Subcommands that take the global flags too (after the subcommand's name), kept by name in
    `registry` (rc files are parsed by each command's own parser)."""
    add = sub.add_parser

    def add_parser(name, *a, **k):
        parser = add(name, *a, parents=[common], **k)
        if registry is not None:
            registry[name] = parser
        return parser

    sub.add_parser = add_parser
    return sub


CACHE_DIR_HELP = f"the cache (default: <workspace>/cache, or ${CACHE_ENV})"


def _inspection_commands(sub, common: argparse.ArgumentParser) -> None:
    """query, show, clean and cache: the commands that read the workspace and its cache."""
    q = sub.add_parser("query", help="list targets matching patterns (default //...)")
    q.add_argument("patterns", nargs="*", help=PATTERNS_HELP)
    q.add_argument("--deps", action="store_true", help="include the transitive dependencies")
    q.add_argument("--output", choices=["label", "long"], default="long",
                   help="label: one label per line, for scripts; long (default): kind, label and where it is declared")
    q.add_argument("--actions", action="store_true", help="list the action graph instead (like bazel aquery)")
    q.add_argument("--rdeps", nargs="+", metavar="FILE_OR_LABEL",
                   help="the targets that read these files (sources, weights, data, BUILD.models, .star) or "
                        "depend on these targets, and those targets")
    q.add_argument("--affected-since", metavar="GIT_REV",
                   help="the targets whose inputs or declarations changed since GIT_REV (committed or not), and "
                        "every target that depends on one")
    q.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    q.set_defaults(run=cmd_query)

    s = sub.add_parser("show", help="show what the cache holds for a target: sizes, delegation, verification")
    s.add_argument("label", help="//pkg:name, or :name in the current directory's package")
    s.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    s.set_defaults(run=cmd_show)

    c = sub.add_parser("clean", help="remove out/ (and with --cache, the cache)")
    c.add_argument("--cache", action="store_true", help="also empty the cache")
    c.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    c.set_defaults(run=cmd_clean)

    g = sub.add_parser("graph", help="the target graph (or with --actions the action graph), each node's state "
                                      "from the cache, as dot, mermaid or a self-contained HTML page")
    g.add_argument("patterns", nargs="*", help=PATTERNS_HELP)
    g.add_argument("--format", choices=["dot", "mermaid", "html"], default="dot", help="dot (default), mermaid or html")
    g.add_argument("--actions", action="store_true", help="the action graph of those targets instead")
    g.add_argument("--output", "-o", metavar="FILE", help="write it to FILE (default: standard output)")
    g.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    g.set_defaults(run=cmd_graph)

    h = sub.add_parser("help", help="what BUILD.models may call (rules, values, builtins); with a NAME, its fields")
    h.add_argument("name", nargs="?", help="a rule (executorch_program), a value (tensor) or a builtin (glob)")
    h.set_defaults(run=cmd_help)

    k = sub.add_parser("cache", help="bound the cache (gc) or see what it holds (stats)")
    ksub = _knowing(k.add_subparsers(dest="cache_command", required=True), common)
    g = ksub.add_parser("gc", help="remove blobs, least recently used first; never what out/ holds or a running build uses")
    g.add_argument("--max-size", metavar="SIZE", help="shrink the CAS to at most SIZE (500M, 5G, 10GiB)")
    g.add_argument("--older-than", metavar="DAYS", type=float, help="remove blobs unused for more than DAYS days")
    g.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    g.set_defaults(run=cmd_cache_gc)
    t = ksub.add_parser("stats", help="what the cache holds: blobs, sizes, last use, what out/ holds")
    t.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    t.set_defaults(run=cmd_cache_stats)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_IN_THE_WAY = {errno.ENOTDIR, errno.EEXIST, errno.EISDIR}
_NEARLY_FULL = 16 << 20  # bytes free under which a failed write is put down to a full disk


def _probe(path: Path) -> int | None:
    """Why writing under path fails, from the file system itself (SQLite's errors say little:
    a full disk can come back as 'disk I/O error')."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        fs = os.statvfs(path)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if fs.f_bavail * fs.f_frsize < _NEARLY_FULL:
        return errno.ENOSPC
    return None if os.access(path, os.W_OK) else errno.EACCES


def _cache_for_message(args) -> Path:
    try:
        root = Workspace.find().root
    except UserError:
        root = Path.cwd()
    return cache_dir(getattr(args, "cache_dir", None), root)


def environment_fault(err: OSError | sqlite3.Error, args) -> str | None:
    """What to say when the machine, not the build, is at fault (a full disk, a read-only cache, a file
    where a directory must be); None for anything else, which is a bug and keeps its traceback.
    Nothing already cached is lost: blobs and records are only ever added whole."""
    cache = _cache_for_message(args)
    if isinstance(err, sqlite3.Error):  # diskcache's SQLite names no path: it is one of the cache's stores
        text = str(err).lower()
        where, why = cache, f"SQLite: {err}"
        code = errno.ENOSPC if "full" in text else errno.EROFS if "readonly" in text else _probe(cache)
    else:
        where, why, code = Path(err.filename) if err.filename else cache, err.strerror or str(err), err.errno
        if where.name.startswith(".tmp-"):  # our own scratch file: name the directory it was in
            where = where.parent
        if code == errno.EIO:
            code = _probe(where) or code
    in_cache = where == cache or where.is_relative_to(cache)
    if code in _FULL:
        return (f"no space left to write {where} ({why}). Free space on that disk"
                + (" (`modelbuild cache gc --max-size SIZE` shrinks the cache)" if in_cache else "")
                + " and build again; nothing already cached was lost")
    if code in _READ_ONLY:
        return (f"cannot write {where} ({why}). Make it writable"
                + (f", or use another cache with --cache-dir DIR or ${CACHE_ENV}" if in_cache else "")
                + "; nothing already cached was lost")
    if code in _IN_THE_WAY:
        return f"{where} is in the way ({why}): modelbuild needs a directory there, or a file. Move it and build again"
    return None


def _apply_rc(args, argv: list[str], commands: dict) -> None:
    from . import rc

    try:
        root = Workspace.find().root
    except UserError:  # outside a workspace: the user's file alone
        root = None
    announced = rc.apply(args, argv, commands, root)
    if getattr(args, "announce_rc", False):
        rc.announce(announced)


def _stop(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a CI timeout, `kill`) stops the build as Ctrl-C does


def main(ruleset: RuleSet, argv: list[str] | None = None) -> int:
    """The command line, with a rule set: the entry point (modelbuild/__main__.py) wires in the rules."""
    signal.signal(signal.SIGTERM, _stop)
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = parser(ruleset)
    args = commands.parse_args(argv)
    args.ruleset, args.argv = ruleset, argv
    args.verbose = getattr(args, "verbose", False)
    args.config = getattr(args, "config_before_command", []) + getattr(args, "config", [])
    # No emoji codes: a label such as //a:b:c must print as written.
    console = Console(stderr=False, highlight=False, emoji=False)
    errors = Console(stderr=True, highlight=False, emoji=False)
    try:
        _apply_rc(args, argv, commands.commands)
        return args.run(args, console)
    except UserError as err:  # it says where and what: the engine's traceback would only hide that
        errors.print(f"[bold red]ERROR:[/] {escape(str(err))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/]")
        return 130
    except (OSError, sqlite3.Error) as err:
        message = environment_fault(err, args)
        if message is None:
            raise
        if args.verbose:
            errors.print_exception()
        errors.print(f"[bold red]ERROR:[/] {escape(message)}", soft_wrap=True)
        return 2

