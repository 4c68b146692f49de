"""Action keys and the cache lookup, in one place (as ninja's DependencyScan): the scheduler, `show`
and `--explain` compute a key and read the cache the same way.

A key is the digest of an action's step, rule source, config, the *content* digests of its inputs
and the toolchain: an input that came out unchanged keeps the key, however it was produced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..digests import digest_json
from ..rule_api import METRICS, Action, RuleSet, Sources
from ..toolchain import toolchain
from .action_cache import ActionCache, ActionResult, FailureRecord, OutputRecord
from .cas import CAS, CorruptBlob
from .explain import reasons
from .keys import action_key, material
from .uploads import Uploads

ResultOf = Callable[[str], ActionResult]  # action id -> the result it produced in this build


@dataclass
class Found:
    """What the cache holds for an action's key: a result, a recorded failure, or nothing."""

    key: str
    result: ActionResult | None = None
    failure: FailureRecord | None = None


class ActionLookup:
    def __init__(self, ruleset: RuleSet, cache: ActionCache, cas: CAS, remote=None):
        self.ruleset = ruleset
        self.cache = cache
        self.cas = cas
        self.remote = remote  # a remote_cache.RemoteCache, read after the local cache misses
        self._remote_missed: set[str] = set()  # keys asked for once this build: a second ask is the same answer
        self._uploads = Uploads(self._upload)

    # Keys -------------------------------------------------------------------------------------
    @staticmethod
    def input_digest(value, result_of: ResultOf) -> str:
        if isinstance(value, Sources):
            return value.digest()
        result = result_of(value.action)
        if value.name == METRICS:
            return digest_json(result.reported())
        return result.outputs[value.name].digest

    def material(self, action: Action, result_of: ResultOf, by_file: bool = False) -> dict:
        step = self.ruleset.steps[action.step]
        return material(action, lambda v: self.input_digest(v, result_of), toolchain(step.packages, step.host_bound),
                        by_file)

    def key(self, action: Action, result_of: ResultOf) -> str:
        return action_key(self.material(action, result_of))

    # Explain ----------------------------------------------------------------------------------
    @staticmethod
    def _note_name(action: Action) -> str:
        return f"{action.label}|{action.step}"

    def reasons(self, action: Action, result_of: ResultOf) -> list[str]:
        """Why the action must run: what changed since its target's step last ran here."""
        return reasons(self.cache.get_note(self._note_name(action)), self.material(action, result_of, by_file=True))

    # Lookup -----------------------------------------------------------------------------------
    def complete(self, record: OutputRecord) -> bool:
        """Every blob of the output is in the local CAS (a tree: its manifest and each file's blob)."""
        if not record.is_tree:
            return self.cas.has(record.digest)
        try:
            files, _ = self.cas.tree_entries(record.digest)
        except (CorruptBlob, OSError, ValueError):
            return False
        return all(self.cas.has(blob) for _, blob, _ in files)

    def find(self, key: str, failures: bool = True) -> Found:
        """The local cache's result for the key; else the remote cache's (its blobs fetched and
        verified, then recorded locally); else a failure recorded here for it (if `failures`)."""
        hit = self.cache.get(key)
        if hit is not None and all(self.complete(o) for o in hit.outputs.values()):
            return Found(key, result=hit)
        remote = self._fetch_remote(key)
        if remote is not None:
            return Found(key, result=remote)
        failure = self.cache.get_failure(key) if failures else None
        return Found(key, failure=failure)

    def _fetch_remote(self, key: str) -> ActionResult | None:
        if self.remote is None or key in self._remote_missed:
            return None
        self._remote_missed.add(key)  # a hit is stored locally, so it is never asked for again either
        body = self.remote.get_record(key)
        if body is None:
            return None
        try:
            result = ActionResult.model_validate(body)
        except ValueError:
            self.remote.reject(key, "a record that is not an action result")
            return None
        if not all(self._fetch_output(o) for o in result.outputs.values()):
            self.remote.stats.hits -= 1  # a record without its blobs is a miss: the action runs
            self.remote.stats.misses += 1
            return None
        if result.log and not self.cas.has(result.log):
            self.remote.fetch_blob(result.log, self.cas)  # the log is nice to have, not needed
        self.cache.put(key, result)
        return result

    def _fetch_output(self, record: OutputRecord) -> bool:
        if not (self.cas.has(record.digest) or self.remote.fetch_blob(record.digest, self.cas)):
            return False
        if not record.is_tree:
            return True
        try:
            files, _ = self.cas.tree_entries(record.digest)
        except (CorruptBlob, OSError, ValueError):
            return False
        return all(self.cas.has(blob) or self.remote.fetch_blob(blob, self.cas) for _, blob, _ in files)

    # Storing ----------------------------------------------------------------------------------
    def store(self, action: Action, key: str, result: ActionResult, result_of: ResultOf) -> None:
        """Record a result here (last, after its blobs), note its key material for --explain, and
        upload it: blobs first, the record last, so a reader never finds a record without its blobs."""
        self.cache.put(key, result)
        self.cache.put_note(self._note_name(action), self.material(action, result_of, by_file=True))
        if self.remote is None or not self.remote.upload:
            return
        self._uploads.submit(key, result)

    def uploads_pending(self) -> int:
        return self._uploads.pending()

    def finish_uploads(self, cancel: bool = False) -> None:
        """Wait for every upload (or, with cancel, for none: see uploads.py)."""
        self._uploads.finish(cancel)

    def _upload(self, key: str, result: ActionResult) -> None:
        """Blobs first, the record last, so a reader never finds a record without its blobs."""
        try:
            for record in result.outputs.values():
                blobs = [record.digest]
                if record.is_tree:
                    blobs += [blob for _, blob, _ in self.cas.tree_entries(record.digest)[0]]
                for blob in blobs:
                    self.remote.put_blob(blob, self.cas)
            if result.log:
                self.remote.put_blob(result.log, self.cas)
            self.remote.put_record(key, result.model_dump(mode="json"))
        except Exception as err:  # the remote cache only saves time: nothing of it fails the build
            self.remote.stop_uploads(f"uploading {key[:16]} failed ({err!r})")
