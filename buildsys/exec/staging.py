"""Staging: the directory an action runs in, under the cache's tmp/, and the way in and out of it.
Inputs are laid out from the CAS (verified, a tree materialized); outputs and the log go into the
CAS when the step is done. A killed build's staging is swept by the next (its names carry its pid)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..cache import scratch
from ..cache.action_cache import ActionResult, OutputRecord
from ..cache.cas import CAS, CorruptBlob
from ..digests import canonical_json
from ..rule_api import METRICS, Output, Sources
from ..rule_api.wire import FileInput, SourceFile, SourcesInput

LOG = "log.txt"


class Staging:
    def __init__(self, tmp_root: Path, cas: CAS):
        self.tmp_root = tmp_root
        self.cas = cas
        scratch.sweep(tmp_root)  # staging of a build that was killed
        self._dirs: dict[str, Path] = {}  # action id -> its staging directory, while it runs

    def open(self, aid: str) -> Path:
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.tmp_root, prefix=scratch.prefix(aid[:12] + "-")))
        (staging / "out").mkdir()
        self._dirs[aid] = staging
        return staging

    def take(self, aid: str) -> Path:
        """The action's directory, no longer tracked: its caller removes it."""
        return self._dirs.pop(aid)

    def discard(self, aid: str) -> None:
        path = self._dirs.pop(aid, None)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def discard_all(self) -> None:
        for aid in list(self._dirs):
            self.discard(aid)

    def input(self, value: Sources | Output, staging: Path, name: str, producer: ActionResult | None,
              digest: str) -> SourcesInput | FileInput:
        """What the step is given for one input: sources by path and digest, an earlier output by its
        verified blob (a tree laid out in the staging), metrics as a JSON file."""
        if isinstance(value, Sources):
            return SourcesInput(sources=[SourceFile(path=p, digest=d) for p, d in value.files])
        if value.name == METRICS:
            path = staging / "in" / f"{name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(canonical_json(producer.reported()))
            return FileInput(path=str(path), digest=digest)
        record = producer.outputs[value.name]
        if record.is_tree:
            path = staging / "in" / name
            self.cas.materialize(record.digest, True, path)
        else:
            if not self.cas.verify(record.digest):
                raise CorruptBlob(record.digest)
            path = self.cas.path(record.digest)
        return FileInput(path=str(path), digest=record.digest, is_tree=record.is_tree)

    def log(self, staging: Path) -> tuple[str, str | None]:
        """The step's log: its text, and its digest once stored in the CAS (None if it wrote none)."""
        path = staging / LOG
        if not path.is_file():
            return "", None
        return path.read_text(errors="replace"), self.cas.put_file(path)

    def ingest(self, staging: Path, names: tuple[str, ...]) -> dict[str, OutputRecord] | str:
        """Each declared output into the CAS; the name of one the step did not write, if any."""
        outputs = {}
        for name in names:
            path = staging / "out" / name
            if path.is_dir():
                outputs[name] = OutputRecord(digest=self.cas.put_tree(path), is_tree=True,
                                             size=sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
            elif path.is_file():
                outputs[name] = OutputRecord(digest=self.cas.put_file(path), size=path.stat().st_size)
            else:
                return name
        return outputs
