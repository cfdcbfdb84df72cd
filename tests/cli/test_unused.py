"""`cnnscope unused`: units are measured where they fire, after the activation."""

from __future__ import annotations

import json

from cnnscope.cli import main


def test_conv_stage_measured_after_its_activation(capsys) -> None:
    # conv1's pre-activation maps are signed: measured there, 27 of 32 channels looked
    # "unused". Measured where they fire (relu1), the answer equals asking for relu1.
    assert main(["unused", "--layers", "conv1,relu1,fc1", "--json"]) == 0
    conv1, relu1, fc1 = json.loads(capsys.readouterr().out)
    assert (conv1["requested"], conv1["stage"]) == ("conv1", "relu1")
    assert conv1["unused"] == relu1["unused"] and conv1["units"] == 32
    assert len(conv1["unused"]) < 27
    assert (fc1["requested"], fc1["stage"]) == ("fc1", "fc1")
    assert main(["unused", "--layers", "conv1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("relu1 ") and "conv1 → relu1" in out


def test_default_layers_come_from_stage_kinds(capsys) -> None:
    assert main(["unused", "--model", "lenet5", "--json"]) == 0
    stages = [r["stage"] for r in json.loads(capsys.readouterr().out)]
    assert stages == ["relu1", "pool1", "relu2", "pool2", "fc1", "fc2"]


def test_normalised_stages_are_measured_after_their_activation() -> None:
    from cnnscope.cli.unused import stages
    from cnnscope.models import build_model

    model = build_model("best")
    # A BatchNorm map is signed like its conv's: by default not measured at all, and when
    # asked for, measured where the conv's channels fire.
    default = [measured for _, measured in stages(model, None)]
    assert not any(s.startswith(("conv", "bn")) for s in default)
    assert default[:3] == ["relu1", "pool1", "relu2"] and default[-2:] == ["pool3", "fc1"]
    assert stages(model, "bn2,conv3") == [("bn2", "relu2"), ("conv3", "relu3")]
