"""The top-examples index: one pass, the same answers as a full scan of each unit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnscope.analysis.features import UnitIndex, top_examples, unit_index, unit_scores
from cnnscope.models import build_model


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    images = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8)
    images[::7] = 0  # ties: blank images score alike, the ranking must still agree
    return model, images


def test_index_ranks_every_unit_as_a_full_scan_does(tiny) -> None:
    model, images = tiny
    stages = ["relu1", "pool2", "fc1", "logits"]
    index = unit_index(model, images, stages, k=20, batch_size=128)
    for stage in stages:
        scores = unit_scores(model, images, stage, batch_size=128)
        want = np.argsort(-scores, axis=0, kind="stable")[:20]
        assert np.array_equal(index.top[stage], want), stage
        assert np.allclose(index.scores[stage], np.take_along_axis(scores, want, axis=0))


def test_top_examples_from_the_index_equal_the_full_scan(tiny) -> None:
    model, images = tiny
    index = unit_index(model, images, ["relu1", "relu2", "fc1"], k=16)
    for stage, unit in (("conv1", 2), ("relu2", 7), ("fc1", 30)):  # conv1 ranks as relu1
        assert top_examples(model, images, stage, unit, 9, index=index) == top_examples(
            model, images, stage, unit, 9
        )
    # More examples than the index holds, or a stage it lacks: a full scan, same answer.
    assert top_examples(model, images, "fc1", 3, 17, index=index) == top_examples(
        model, images, "fc1", 3, 17
    )
    assert top_examples(model, images, "pool1", 1, 4, index=index) == top_examples(
        model, images, "pool1", 1, 4
    )


def test_index_round_trips_through_its_file_and_refuses_others(tiny, tmp_path) -> None:
    model, images = tiny
    index = unit_index(model, images, ["fc1", "logits"], k=5)
    index.save(tmp_path / "i.safetensors")
    back = UnitIndex.load(tmp_path / "i.safetensors")
    assert back.k == 5 and back.top.keys() == {"fc1", "logits"}
    for stage in back.top:
        assert np.array_equal(back.top[stage], index.top[stage])
        assert np.array_equal(back.scores[stage], index.scores[stage])
    from safetensors.numpy import save_file

    save_file({"peak": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a unit index"):
        UnitIndex.load(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="valid"):
        unit_index(model, images, ["nope"])
