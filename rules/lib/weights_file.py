"""What a weights file is, judged from its first bytes, without the toolchain: target kinds check
at plan time, in the engine's process, that `weights` is really a safetensors file."""
from __future__ import annotations

from pathlib import Path

# A safetensors file starts with the length of its JSON header (u64, little endian), then "{".
# What a file that does not is, by its first bytes:
_MAGIC = [
    (b"PK\x03\x04", "a zip archive: what torch.save writes (a .pt/.pth/.bin checkpoint), or a numpy .npz"),
    (b"\x80", "a Python pickle: what torch.save writes with the legacy format"),
    (b"\x93NUMPY", "a numpy .npy array"),
    (b"GGUF", "a GGUF file (llama.cpp)"),
    (b"\x89HDF", "an HDF5 file (Keras .h5)"),
]
CONVERT = ("to convert a PyTorch checkpoint holding a state_dict: "
           "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')")


def not_safetensors(path: Path) -> str | None:
    """Why the file is not a safetensors file, judged from its first bytes; None if it looks like one."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else None
    if header is not None and 8 + header <= size and head[8:9] == b"{":
        return None
    looks = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
    if looks is None and head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        looks = "text"
    found = f"it is {looks}" if looks else "its first 8 bytes are not the length of a header that fits in the file"
    return f"not a safetensors file ({size} bytes; {found})"
