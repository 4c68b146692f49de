"""Releases: a deterministic archive with a manifest, provenance (signed or not) and test bundles,
that verify-release checks file by file, and catches every kind of tampering with."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import build, by_status, copy_example, keypair, run_cli

WORKSPACE = Path(__file__).parents[1] / "workspaces" / "release"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def repack(src: Path, dst: Path, change) -> Path:
    """The archive with `change(files)` applied to its {name: bytes} (order and metadata as tarfile likes)."""
    files = members(src)
    change(files)
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The release workspace with //:app built cold, signed."""
    tmp = tmp_path_factory.mktemp("release")
    ws = tmp / "ws"
    shutil.copytree(WORKSPACE, ws, ignore=shutil.ignore_patterns("__pycache__", "cache", "out"))
    private, public = keypair(tmp, "signer")
    proc, events = build(ws, "//:app", extra=("--sign-key", str(private)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws, events, private, public


def verify(ws: Path, archive: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(ws, "verify-release", str(archive), *extra)


def test_release_archive_holds_every_artifact_bundle_manifest_and_provenance(released):
    ws, events, _, _ = released
    archive = ws / "out" / "app.tar.gz"
    files = members(archive)
    assert sorted(files) == [
        "MANIFEST.json",
        "artifacts/mlp_int8.bpte", "artifacts/mlp_int8.pte", "artifacts/mlp_pt2.pt2",
        "artifacts/mlp_xnnpack.bpte", "artifacts/mlp_xnnpack.pte",
        "artifacts/more/mlp_xnnpack.bpte", "artifacts/more/mlp_xnnpack.pte",  # same name, other package
        "provenance.intoto.json",
    ]
    manifest = json.loads(files["MANIFEST.json"])
    assert manifest["release"] == {"label": "//:app", "name": "app", "version": "1.4.0", "epoch": 315532800}
    assert manifest["source"] == {"vcs": None}  # a copied workspace: no repository, and the manifest says so
    assert manifest["toolchain"]["torch"].startswith("2.13") and manifest["toolchain"]["executorch"] == "1.4.1"
    by_path = {a["path"]: a for a in manifest["artifacts"]}
    xnn = by_path["artifacts/mlp_xnnpack.pte"]
    assert xnn["sha256"] == hashlib.sha256(files["artifacts/mlp_xnnpack.pte"]).hexdigest()
    assert xnn["size"] == len(files["artifacts/mlp_xnnpack.pte"])
    assert xnn["label"] == "//:mlp_xnnpack" and xnn["model"]["label"] == "//:mlp" and xnn["format"] == "pte"
    assert "models/nets.py" in xnn["model"]["sources"]
    assert xnn["declaration"]["backends"] and xnn["declaration"]["name"] == "mlp_xnnpack"
    assert xnn["backends"]["delegation"]["compute_ops"]["delegated"] >= 2
    assert xnn["sizes"]["delegates"]["XnnpackBackend"] > 0 and xnn["sizes"]["total_bytes"] == xnn["size"]
    assert xnn["verification"]["passed"] and xnn["verification"]["numeric"]
    assert [c["case"] if "case" in c else c.get("name") for c in xnn["verification"]["cases"]]
    assert "seconds" not in json.dumps(xnn["verification"])  # timings would make the manifest irreproducible
    assert xnn["bundle"]["path"] == "artifacts/mlp_xnnpack.bpte" and xnn["bundle"]["checked"] and xnn["bundle"]["passed"]
    int8 = by_path["artifacts/mlp_int8.pte"]
    assert int8["quantization"]["declared"]["scheme"] == "pt2e_int8_dynamic"
    assert int8["quantization"]["coverage"]["quantized_layers"] == 2
    assert by_path["artifacts/mlp_pt2.pt2"]["format"] == "pt2" and "bundle" not in by_path["artifacts/mlp_pt2.pt2"]
    assert by_path["artifacts/more/mlp_xnnpack.pte"]["model"]["label"] == "//more:mlp"
    # the provenance: a signed DSSE envelope around an in-toto statement naming every file
    envelope = json.loads(files["provenance.intoto.json"])
    assert envelope["payloadType"] == "application/vnd.in-toto+json" and len(envelope["signatures"]) == 1
    import base64

    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n != "provenance.intoto.json"}
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["release"] == "//:app"
    assert "not in a git repository" in definition["externalParameters"]["source"]["note"]
    assert {"torch", "executorch", "coremltools"} <= {d["name"] for d in definition["resolvedDependencies"]}


def test_archive_is_deterministic_tar(released):
    ws, _, _, _ = released
    raw = (ws / "out" / "app.tar.gz").read_bytes()
    assert raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0"  # gzip header: no file name (FNAME), no time
    with tarfile.open(ws / "out" / "app.tar.gz", "r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert {(i.uid, i.gid, i.uname, i.gname, i.mtime) for i in infos} == {(0, 0, "", "", 315532800)}
    assert {i.mode for i in infos if i.isfile()} == {0o644} and {i.mode for i in infos if i.isdir()} == {0o755}


def test_unchanged_release_rebuild_runs_nothing(released):
    ws, _, private, _ = released
    before = sha(ws / "out" / "app.tar.gz")
    proc, events = build(ws, "//:app", events="again.jsonl", extra=("--sign-key", str(private)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_status(events, "ran") == set() and ("release", "//:app") in by_status(events, "cached")
    assert sha(ws / "out" / "app.tar.gz") == before


def test_verify_release_passes_and_checks_the_signature(released, tmp_path):
    ws, _, _, public = released
    archive = ws / "out" / "app.tar.gz"
    proc = verify(ws, archive, "--key", str(public))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "signature verified" in proc.stdout and "OK" in proc.stdout
    assert "artifacts/more/mlp_xnnpack.pte" in proc.stdout  # it says what is in it
    _, other = keypair(tmp_path, "other")
    proc = verify(ws, archive, "--key", str(other))
    assert proc.returncode == 1 and "signature does not verify" in proc.stdout, proc.stdout


def _flip(name: str):
    def change(files):
        data = bytearray(files[name])
        data[len(data) // 2] ^= 0x01
        files[name] = bytes(data)
    return change


def _retarget_manifest(files):
    """Tamper with an artifact, and edit the manifest to match: only the provenance can tell."""
    _flip("artifacts/mlp_pt2.pt2")(files)
    manifest = json.loads(files["MANIFEST.json"])
    digest = hashlib.sha256(files["artifacts/mlp_pt2.pt2"]).hexdigest()
    manifest["files"]["artifacts/mlp_pt2.pt2"]["sha256"] = digest
    next(a for a in manifest["artifacts"] if a["path"] == "artifacts/mlp_pt2.pt2")["sha256"] = digest
    files["MANIFEST.json"] = json.dumps(manifest).encode()


TAMPERING = {
    "flipped_byte": (_flip("artifacts/mlp_xnnpack.pte"), ["artifacts/mlp_xnnpack.pte: sha256"]),
    "removed_file": (lambda f: f.pop("artifacts/mlp_xnnpack.bpte"), ["artifacts/mlp_xnnpack.bpte: missing"]),
    "added_file": (lambda f: f.update({"artifacts/extra.pte": b"not from the build"}), ["artifacts/extra.pte: an extra file"]),
    "manifest_edited_to_match": (_retarget_manifest, ["artifacts/mlp_pt2.pt2: sha256", "MANIFEST.json: sha256"]),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_verify_release_catches_tampering(released, tmp_path, case):
    ws, _, _, public = released
    change, expected = TAMPERING[case]
    bad = repack(ws / "out" / "app.tar.gz", tmp_path / "bad.tar.gz", change)
    proc = verify(ws, bad, "--key", str(public))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    mismatches = [l for l in proc.stdout.splitlines() if l.startswith("MISMATCH")]
    for text in expected:
        assert any(text in l for l in mismatches), (text, proc.stdout)
    if case == "flipped_byte":  # which file, the digest expected and the one found
        actual = hashlib.sha256(members(bad)["artifacts/mlp_xnnpack.pte"]).hexdigest()
        line = next(l for l in mismatches if "artifacts/mlp_xnnpack.pte" in l)
        assert actual in line and sha_in(line, exclude=actual)
    assert "Traceback" not in proc.stdout + proc.stderr


def sha_in(line: str, exclude: str) -> bool:
    import re

    return any(h != exclude for h in re.findall(r"\b[0-9a-f]{64}\b", line))


def test_signed_payload_edited_fails_the_signature(released, tmp_path):
    ws, _, _, public = released
    import base64

    def change(files):
        envelope = json.loads(files["provenance.intoto.json"])
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["buildDefinition"]["externalParameters"]["version"] = "9.9.9"
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        files["provenance.intoto.json"] = json.dumps(envelope).encode()

    proc = verify(ws, repack(ws / "out" / "app.tar.gz", tmp_path / "resigned.tar.gz", change), "--key", str(public))
    assert proc.returncode == 1 and "signature does not verify" in proc.stdout, proc.stdout


def test_bad_archives_and_keys_get_one_clear_message(released, tmp_path):
    ws, _, private, public = released
    archive = ws / "out" / "app.tar.gz"
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    notgz = tmp_path / "notes.tar.gz"
    notgz.write_text("hello")
    cases = [
        (verify(ws, truncated), "corrupt or truncated"),
        (verify(ws, notgz), "not a readable .tar.gz"),
        (verify(ws, tmp_path / "missing.tar.gz"), "cannot read"),
        (verify(ws, archive, "--key", str(tmp_path / "nokey.pub")), "cannot read the public key"),
        (verify(ws, archive, "--key", str(private)), "not a PEM public key"),
        (run_cli(ws, "build", "//:app", "--sign-key", str(public)), "not an unencrypted PEM private key"),
    ]
    for proc, text in cases:
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    unsigned_wanted = verify(ws, repack(archive, tmp_path / "u.tar.gz", lambda f: f.update(
        {"provenance.intoto.json": json.dumps({"_type": "x", "subject": []}).encode()})), "--key", str(public))
    assert unsigned_wanted.returncode == 1 and "is not signed" in unsigned_wanted.stdout


def test_a_failed_artifact_fails_the_release(released):
    ws, _, _, _ = released
    proc, events = build(ws, "//:with_broken", events="broken.jsonl")
    assert proc.returncode == 1
    assert ("release", "//:with_broken") in by_status(events, "skipped")
    assert not (ws / "out" / "with_broken.tar.gz").exists()
    assert "this model is broken on purpose" in proc.stdout + proc.stderr


def test_example_release_rebuilds_byte_identical_in_another_tree(example, tmp_path):
    """The example's //:release (every format, Core ML included), built by the session's build, is
    rebuilt by verify-release --rebuild in another directory with an empty cache, another time
    zone, umask and locale: every file, and the archive itself, come out byte-identical."""
    ws, _ = example
    archive = ws / "out" / "release.tar.gz"
    shipped = json.loads(members(archive)["MANIFEST.json"])["artifacts"]
    assert len(shipped) == 20 and {a["format"] for a in shipped} == {"pt2", "pte", "mlpackage", "onnx", "aoti"}
    other = copy_example(tmp_path / "elsewhere" / "deeper")
    proc = run_cli(other, "verify-release", str(archive), "--rebuild", timeout=1500,
                   env={"TZ": "Asia/Kolkata", "LC_ALL": "C", "LANG": "C"}, umask=0o077)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"archive sha256 {sha(archive)} (identical)" in proc.stdout, proc.stdout
    assert "and the rebuild is byte-identical" in proc.stdout
