"""summary(): torchvision's published parameter counts and GMACs, and a readable table."""

from __future__ import annotations

import numpy as np
import pytest

from numpy_resnet.blocks import conv3x3
from numpy_resnet.models import cifar_resnet, get_model, resnet18, resnet50
from numpy_resnet.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential
from numpy_resnet.summary import layer_macs, summary


def test_resnet18_at_224_is_1_814_gmacs_and_11_7m_parameters():
    result = summary(resnet18(), (3, 224, 224))
    assert result.total_macs == 1_814_073_344                 # torchvision: 1.81 GFLOPS
    assert result.total_params == 11_689_512
    assert result.rows[-1].output_shape == (1, 1000)


def test_resnet50_at_224_is_4_089_gmacs():
    result = summary(resnet50(), (3, 224, 224))
    assert result.total_macs == 4_089_184_256                 # torchvision: 4.09 GFLOPS
    assert result.total_params == 25_557_032


def test_resnet50_v1_with_stride_in_the_first_1x1_is_3_86_gmacs():
    # the paper's Table 1 says 3.8 x 10⁹ FLOPs (multiply-adds)
    assert summary(resnet50(stride_in_1x1=True)).total_macs == 3_857_973_248


@pytest.mark.slow
@pytest.mark.parametrize("name, v1_5, v1", [
    ("resnet34", 3_663_761_408, None),
    ("resnet101", 7_801_405_440, 7_570_194_432),              # published 7.80 / 7.6
    ("resnet152", 11_513_626_624, 11_282_415_616),            # published 11.51 / 11.3
])
def test_deeper_resnets_match_published_gmacs(name, v1_5, v1):
    assert summary(get_model(name)).total_macs == v1_5
    if v1 is not None:
        assert summary(get_model(name, stride_in_1x1=True)).total_macs == v1


def test_cifar_resnet20_is_40_55_million_macs():
    result = summary(cifar_resnet(20), (3, 32, 32))
    assert result.total_macs == 40_551_040
    assert result.total_params == 269_722


def test_conv_macs_are_output_size_times_inputs_per_group_times_kernel():
    conv = Conv2d(8, 16, kernel_size=3, stride=2, padding=1, groups=4)
    assert layer_macs(conv, (1, 16, 5, 5)) == 16 * 5 * 5 * (8 // 4) * 3 * 3
    assert layer_macs(Linear(10, 3), (1, 3)) == 30
    assert layer_macs(BatchNorm2d(4), (1, 4, 5, 5)) == 0


def test_summary_rows_follow_the_forward_with_names_shapes_and_params():
    model = Sequential(conv3x3(3, 4, stride=2), BatchNorm2d(4), ReLU(), Flatten(), Linear(64, 5))
    result = summary(model, (3, 8, 8))
    assert [r.name for r in result.rows] == ["0", "1", "2", "3", "4"]
    assert [r.output_shape for r in result.rows] == [(1, 4, 4, 4)] * 3 + [(1, 64), (1, 5)]
    assert [r.params for r in result.rows] == [108, 8, 0, 0, 325]
    assert [r.macs for r in result.rows] == [4 * 4 * 4 * 3 * 9, 0, 0, 0, 320]
    assert result.total_params == 441


def test_summary_table_prints_layers_and_totals():
    text = str(summary(cifar_resnet(20), (3, 32, 32)))
    assert "layer1.0.conv1" in text and "layer3.0.downsample" in text
    assert "(1, 64, 8, 8)" in text
    assert "269,722" in text and "40,551,040" in text


def test_summary_leaves_the_model_as_it_found_it():
    model = cifar_resnet(8, width=4)
    before = model.state_dict()
    summary(model, (3, 16, 16))
    assert model.training and all(m.training for m in model.modules())
    assert all("forward" not in m.__dict__ for m in model.modules())
    for key, value in model.state_dict().items():              # running statistics untouched
        np.testing.assert_array_equal(value, before[key])
    model.eval()
    summary(model, (3, 16, 16))
    assert not any(m.training for m in model.modules())


def test_summary_command_prints_resnet50_totals(capsys):
    from numpy_resnet import cli

    assert cli.main(["summary", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "25,557,032" in out and "4.089 G" in out


def test_summary_command_rejects_a_malformed_input_shape(capsys):
    from numpy_resnet import cli

    assert cli.main(["summary", "resnet18", "--input", "224x224xRGB"]) == 2
    assert "--input takes CxHxW" in capsys.readouterr().err
