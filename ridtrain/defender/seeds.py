"""Per-photo random seeds and the generator's random code: the one definition every runtime follows.

A randomised generator takes, beside the photo, a code of `code_dim` numbers in (-1, 1). Each
protection draws a fresh 16-byte seed from the operating system's CSPRNG (Python `secrets`, the
browser's `crypto.getRandomValues`) and expands it to the code; the seed is never stored or sent
back. The expansion is SHA-256 in counter mode, so any runtime gets the same code from the same
seed, and fixtures fix the seed to prove byte-identical outputs:

    stream = SHA-256(DOMAIN || seed || be32(0)) || SHA-256(DOMAIN || seed || be32(1)) || ...
    u_i    = big-endian uint16 of stream[2i : 2i+2]
    code_i = (2 u_i + 1) / 65536 - 1          (exact in float32: 17 significant bits at most)

Why a code and not a noise image: the code's size does not depend on the photo, and it makes
every part of delta (the net's features and the tile) depend on the draw, so that neither the
public model run again with another seed (`subtract-public-model`) nor the mean over many
protected photos (`subtract-mean-delta`) recovers it. Uses hashlib and numpy only (no torch).
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np

SEED_BYTES = 16
DOMAIN = b"rid-code-v1"
RULE = "sha256-counter-uint16-v1"  # the manifest's seed.rule; change it with DOMAIN and the browser's copy


def new_seed() -> bytes:
    """A fresh seed from the OS CSPRNG: draw one per protection and do not keep it."""
    return secrets.token_bytes(SEED_BYTES)


def parse_seed(text: str | bytes) -> bytes:
    """A seed given by a person or a fixture: 32 hex digits (or the 16 bytes themselves)."""
    if isinstance(text, bytes):
        seed = text
    else:
        try:
            seed = bytes.fromhex(text.strip())
        except ValueError:
            raise ValueError(f"a seed is {2 * SEED_BYTES} hex digits, got {text!r}") from None
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a seed is {SEED_BYTES} bytes ({2 * SEED_BYTES} hex digits), got {len(seed)}")
    return seed


def seed_code(seed: bytes, dim: int) -> np.ndarray:
    """The generator's code for a seed: float32 (dim,) in (-1, 1), by the rule in the module docstring."""
    seed = parse_seed(seed)
    need, blocks = 2 * dim, []
    for counter in range((need + 31) // 32):
        blocks.append(hashlib.sha256(DOMAIN + seed + counter.to_bytes(4, "big")).digest())
    u = np.frombuffer(b"".join(blocks)[:need], dtype=">u2").astype(np.float64)
    return ((2 * u + 1) / 65536 - 1).astype(np.float32)


def code_for(seed: bytes | str | None, dim: int) -> np.ndarray:
    """seed_code of a given seed, or of a fresh one when seed is None (real use)."""
    return seed_code(new_seed() if seed is None else parse_seed(seed), dim)
