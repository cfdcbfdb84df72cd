from __future__ import annotations

import numpy as np
import pytest

from cnnscope.server.encoding import decode, encode, encode_rows


def test_per_map_round_trip_within_half_a_step() -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 7, 7)).astype(np.float32) * np.arange(1, 5)[:, None, None]
    enc = encode(maps, per_map=True)
    assert enc.shape == [4, 7, 7] and len(enc.min) == len(enc.max) == 4
    got = decode(enc)
    steps = np.ptp(maps.reshape(4, -1), axis=1) / 255
    assert got.shape == maps.shape
    assert (np.abs(got - maps).reshape(4, -1).max(axis=1) <= steps * 0.5 + 1e-5).all()


def test_vector_is_one_map_and_dict_input_works() -> None:
    v = np.linspace(-2, 3, 10, dtype=np.float32)
    enc = encode(v, per_map=False)
    assert enc.min == [-2.0] and enc.max == [3.0]
    assert np.allclose(decode(enc.model_dump()), v, atol=5 / 255)


def test_constant_map_decodes_to_itself() -> None:
    x = np.full((2, 3, 3), 0.25, np.float32)
    assert np.array_equal(decode(encode(x, per_map=True)), x)


@pytest.mark.parametrize("shape", [(5, 3, 6, 6), (4, 10), (3, 8, 8)])
def test_a_batch_is_encoded_row_by_row_exactly_as_one_at_a_time(shape) -> None:
    # encode_rows is what a batched prediction uses: each row must be encode()'s answer.
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(size=shape), 0).astype(np.float32)
    x[1] = 0.5  # a constant row: span 1, all zeros
    per_map = len(shape) == 4
    rows = encode_rows(x, per_map)
    assert [r.model_dump() for r in rows] == [encode(v, per_map).model_dump() for v in x]
    assert rows[0].model_dump_json() == encode(x[0], per_map).model_dump_json()
