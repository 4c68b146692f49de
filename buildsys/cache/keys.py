"""An action's two identities, both written here and nowhere else.

- Its id, at plan time: the digest of its step, rule source, config, outputs and the identities of
  its inputs (source digests, or the producing action's id and output name). Identical steps of
  different targets get the same id and become one node of the action graph.
- Its key, at run time: the same, but with the *content* digests of its inputs and the toolchain's
  versions. An input that comes out byte-identical keeps the key: the rebuild stops there.
"""
from __future__ import annotations

from ..digests import digest_json
from ..rule_api import Output, Sources


def action_id(step: str, rule_digest: str, config: dict, inputs: dict[str, Sources | Output], outputs: tuple[str, ...]) -> str:
    return digest_json({
        "step": step,
        "rule": rule_digest,
        "config": config,
        "inputs": {k: {"sources": v.digest()} if isinstance(v, Sources) else {"action": v.action, "output": v.name}
                   for k, v in inputs.items()},
        "outputs": list(outputs),
    })


def material(action, input_digest, toolchain: dict, by_file: bool = False) -> dict:
    """What an action key is the digest of. by_file lists sources file by file (for --explain,
    to name the file that changed) instead of by their digest."""
    return {
        "step": action.step,
        "rule": action.rule_digest,
        "config": action.config,
        "inputs": {
            name: v.keyed() if by_file and isinstance(v, Sources) else input_digest(v)
            for name, v in action.inputs.items()
        },
        "outputs": list(action.outputs),
        "toolchain": toolchain,
    }


def action_key(material: dict) -> str:
    return digest_json(material)
