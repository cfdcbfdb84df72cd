"""Your own model: import, weights in both formats, stage discovery, normalization."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from cnnscope.analysis.activations import StageRecorder, forward_until, record
from cnnscope.checkpoints import CheckpointError, load_weights, open_model, save_weights
from cnnscope.models import (
    Adapted,
    ForeignModelError,
    load_foreign,
    logits_stage,
    num_classes,
    read_state_dict,
    representation_stage,
    stage_infos,
)

HERE = Path(__file__).parent
SPEC = f"{HERE / 'unlike_ours.py'}:UnlikeOurs"


@pytest.fixture
def net_files(tmp_path: Path) -> tuple[nn.Module, Path, Path]:
    """A seeded UnlikeOurs with BatchNorm statistics, saved as .pt and .safetensors."""
    torch.manual_seed(0)
    net = load_foreign(SPEC).net
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 1, 28, 28))  # running means away from their initial 0/1
    net.eval()
    pt, st = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(net.state_dict(), pt)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    return net, pt, st


def test_stages_are_discovered_in_forward_order_with_the_models_own_names() -> None:
    model = load_foreign(SPEC)
    infos = stage_infos(model)
    assert list(infos) == [
        "features.0",
        "features.1",
        "features.2",
        "features.3",
        "features.4.conv",
        "features.4.bn",
        "features.4.act",  # one GELU called twice: recorded once, at its first call
        "features.6.0",  # Dropout2d (features.5) is not a stage
        "features.6.1",
        "features.7",
        "head.flatten",
        "head.fc1",
        "head.act",  # head.drop is not a stage
        "head.fc",
    ]
    kinds = [i.kind for i in infos.values()]
    assert kinds[:4] == ["conv", "norm", "act", "pool"]
    assert infos["features.7"].shape == (16, 4, 4)  # adaptive pooling
    assert infos["features.7"].rf_size is None  # every unit sees the whole image
    assert infos["head.fc"].kind == "logits" and logits_stage(model) == "head.fc"
    assert num_classes(model) == 10
    assert representation_stage(model) == "head.act"
    assert model.get_submodule("head.fc") is model.net.head.fc


def test_a_factory_and_a_package_import_work_too() -> None:
    model = load_foreign("tests.models.unlike_ours:four_classes")
    assert num_classes(model) == 4


def test_a_module_called_twice_is_recorded_at_its_first_call() -> None:
    model = load_foreign(SPEC)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad(), StageRecorder(model, ["features.3", "features.4.act"]) as rec:
        model(x)
        block = model.net.features[4]
        first = F.gelu(block.bn(block.conv(rec.outputs["features.3"])))
    torch.testing.assert_close(rec.outputs["features.4.act"], first)
    # forward_until stops there too, with the same value
    out = forward_until(model, x, {"features.4.act"})
    torch.testing.assert_close(out["features.4.act"].detach(), first)


def test_an_in_place_relu_does_not_overwrite_the_conv_before_it() -> None:
    torch.manual_seed(1)
    model = load_foreign(SPEC)
    out = record(model, torch.rand(2, 1, 28, 28))
    assert (out["features.6.0"] < 0).any()  # pre-activation values survive
    torch.testing.assert_close(out["features.6.1"], out["features.6.0"].clamp(min=0))


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_weights_load_in_both_formats(net_files, fmt: str) -> None:
    net, pt, st = net_files
    model = load_foreign(SPEC, pt if fmt == "pt" else st)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


def test_normalization_is_applied_inside_forward(net_files) -> None:
    net, pt, _ = net_files
    model = load_foreign(SPEC, pt, normalize=(0.1307, 0.3081))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - 0.1307) / 0.3081))
        first = record(model, x, ["features.0"])["features.0"]
        torch.testing.assert_close(first, net.features[0]((x - 0.1307) / 0.3081))


def test_a_forward_that_ends_in_a_function_gets_a_logits_stage() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 26 * 26, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.log_softmax(self.fc(F.relu(self.conv(x)).flatten(1)), dim=1)

    model = Adapted(Functional(), "inline:Functional")
    assert model.stage_names == ("conv", "fc", "logits")
    x = torch.rand(2, 1, 28, 28)
    out = record(model, x)
    torch.testing.assert_close(out["logits"], model(x))
    assert num_classes(model) == 5


def test_input_shape_comes_from_the_model_or_the_caller() -> None:
    class Wide(nn.Module):
        input_shape = (1, 32, 20)

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(32 * 20, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    assert Adapted(Wide(), "w:Wide").input_shape == (1, 32, 20)
    with pytest.raises(ForeignModelError, match=r"forward pass failed on a \(1, 1, 28, 28\)"):
        Adapted(Wide(), "w:Wide", input_shape=(1, 28, 28))


def test_declared_stage_names_are_kept() -> None:
    class Declared(nn.Module):
        stage_names = ("a", "b")

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)
            self.b = nn.Linear(2 * 26 * 26, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x).flatten(1))

    model = Adapted(Declared(), "d:Declared")
    assert model.stage_names == ("a", "b")
    assert stage_infos(model)["b"].kind == "logits"


def test_declared_stage_names_that_are_no_submodules_are_one_line() -> None:
    # Found from outside: an AttributeError traceback, exit 1.
    class Bad(nn.Module):
        stage_names = ("nope",)

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    with pytest.raises(ForeignModelError, match=r"b:Bad: stage_names lists a name that is not"):
        Adapted(Bad(), "b:Bad")


def test_a_model_that_is_no_classifier_is_refused() -> None:
    class Maps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    with pytest.raises(ForeignModelError, match=r"returns \(1, 2, 26, 26\).*\(N, classes\)"):
        Adapted(Maps(), "m:Maps")


def test_bad_weights_are_one_line_naming_the_file(tmp_path: Path, net_files) -> None:
    _, pt, _ = net_files
    state = torch.load(pt, weights_only=True)
    del state["head.fc.bias"]
    state["features.0.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ForeignModelError) as e:
        load_foreign(SPEC, tmp_path / "bad.pt")
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'bad.pt'}: weights do not fit UnlikeOurs")
    assert (
        "missing head.fc.bias" in message and "features.0.weight (3, 3) vs (8, 1, 3, 3)" in message
    )
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # pickled code: refused unread
    with pytest.raises(ForeignModelError, match="holds Python objects") as refused:
        read_state_dict(tmp_path / "module.pt")
    # torch's own text advised weights_only=False, which would run the file's code.
    assert "weights_only" not in str(refused.value) and "\x1b" not in str(refused.value)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ForeignModelError, match=r"text\.pt: not a readable PyTorch file"):
        read_state_dict(tmp_path / "text.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "lightning.pt")
    assert set(read_state_dict(tmp_path / "lightning.pt")) == set(state)


def test_saved_weights_reload_with_their_normalization_and_need_the_model(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = load_foreign(SPEC, normalize=(0.5, 0.25))
    path = save_weights(model, tmp_path / "own.safetensors")
    assert set(read_state_dict(path)) == set(model.net.state_dict())  # the model's own names
    again, meta = open_model(SPEC, path)
    assert isinstance(again, Adapted) and again.normalize == (0.5, 0.25)
    assert meta["spec"] == SPEC and meta["model"] == "foreign"
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    with pytest.raises(CheckpointError, match=r"--model .*unlike_ours.py:UnlikeOurs --weights"):
        load_weights(path)


def test_pytorchs_example_network_in_examples() -> None:
    """examples/net.py: functional ReLUs and pooling, dropout, and log_softmax at the end."""
    model = load_foreign(f"{HERE.parents[1] / 'examples' / 'net.py'}:Net")
    infos = stage_infos(model)
    assert list(infos) == ["conv1", "conv2", "fc1", "fc2", "logits"]
    assert [i.kind for i in infos.values()] == ["conv", "conv", "fc", "fc", "logits"]
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(record(model, x)["logits"], model(x))


def test_a_conv_with_a_functional_relu_is_rectified_in_feature_objectives() -> None:
    """No ReLU module after conv1: its channel mean is read through a ReLU all the same,
    else maximising it only whitens or blackens the image."""
    from cnnscope.analysis.features import channels

    model = load_foreign(f"{HERE.parents[1] / 'examples' / 'net.py'}:Net")
    objective = channels("conv1", [0, 5], model=model)
    out = forward_until(model, torch.rand(2, 1, 28, 28), objective.stages)
    maps = out["conv1"][torch.arange(2), torch.tensor([0, 5])]  # (2, 26, 26)
    torch.testing.assert_close(objective(out), F.relu(maps).mean(dim=(1, 2)))
    assert (maps < 0).any()  # so the ReLU matters


def test_top_examples_of_such_a_conv_rank_by_what_fires() -> None:
    from cnnscope.analysis.features import unit_scores

    model = load_foreign(f"{HERE.parents[1] / 'examples' / 'net.py'}:Net")
    images = (torch.rand(6, 28, 28) * 255).to(torch.uint8)
    scores = unit_scores(model, images, "conv1")  # (6, 32)
    with torch.no_grad():
        maps = model.net.conv1(images[:, None].float() / 255)
    torch.testing.assert_close(torch.as_tensor(scores), maps.clamp(min=0).mean(dim=(2, 3)))
