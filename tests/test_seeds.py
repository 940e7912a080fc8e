"""The seed rule (ridtrain/defender/seeds.py) that every runtime follows to turn a seed into the code."""

import hashlib

import numpy as np
import pytest

from ridtrain.defender.seeds import DOMAIN, SEED_BYTES, code_for, new_seed, parse_seed, seed_code


def test_code_follows_the_documented_rule():
    seed = bytes(range(16))
    code = seed_code(seed, 40)  # 80 bytes: three SHA-256 blocks, the last one partly used
    stream = b"".join(hashlib.sha256(DOMAIN + seed + i.to_bytes(4, "big")).digest() for i in range(3))
    u = [int.from_bytes(stream[2 * i:2 * i + 2], "big") for i in range(40)]
    assert code.dtype == np.float32 and code.shape == (40,)
    assert code.tolist() == [(2 * v + 1) / 65536 - 1 for v in u]  # exact: the values are float32 numbers


def test_codes_are_in_the_open_interval_and_differ_between_seeds():
    codes = np.stack([seed_code(new_seed(), 64) for _ in range(200)])
    assert codes.min() > -1 and codes.max() < 1
    assert abs(codes.mean()) < 0.02 and len({c.tobytes() for c in codes}) == 200
    assert np.array_equal(seed_code(bytes(16), 64)[:10], seed_code(bytes(16), 10))  # a prefix of a longer code


def test_seed_parsing():
    assert parse_seed("00" * SEED_BYTES) == bytes(SEED_BYTES)
    assert parse_seed(" " + "ab" * SEED_BYTES + "\n") == b"\xab" * SEED_BYTES
    for bad in ("", "abc", "zz" * SEED_BYTES, "00" * (SEED_BYTES + 1), b"short"):
        with pytest.raises(ValueError, match="seed"):
            parse_seed(bad)


def test_code_for_draws_a_fresh_seed_when_none_is_given():
    assert not np.array_equal(code_for(None, 64), code_for(None, 64))
    assert np.array_equal(code_for("11" * 16, 8), seed_code(b"\x11" * 16, 8))
