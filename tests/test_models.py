"""The model library: SE block axes, placements, registry, paper accounting, weights, probe."""

from __future__ import annotations

import json
import math

import pytest
import torch

import senet
from senet.cli import main as cli_main
from senet.errors import SenetError
from senet.excitation.probe import excitation_stats, record_excitations
from senet.models import MODEL_NAMES, se_blocks
from senet.models.flops import count
from senet.models.se import SEConfig, SqueezeExcitation

# (model, options, paper GFLOPs or None, paper params in millions or None)
PAPER = [
    ("resnet50", {}, 3.86, 25.6),
    ("se_resnet50", {"reduction": 2}, None, 45.7),
    ("se_resnet50", {"reduction": 4}, None, 35.7),
    ("se_resnet50", {"reduction": 8}, None, 30.7),
    ("se_resnet50", {"reduction": 16}, 3.87, 28.1),
    ("se_resnet50", {"reduction": 32}, None, 26.9),
    ("se_resnet50", {"stages": "2", "bias": False}, 3.86, 25.6),
    ("se_resnet50", {"stages": "3", "bias": False}, 3.86, 25.7),
    ("se_resnet50", {"stages": "4", "bias": False}, 3.86, 26.4),
    ("se_resnet50", {"placement": "3x3", "bias": False}, 3.86, None),
    ("se_resnet50", {"squeeze": "none", "bias": False}, 4.27, 28.1),
    ("resnet101", {}, 7.58, None),
    ("se_resnet101", {}, 7.60, None),
    ("resnet152", {}, 11.30, None),
    ("se_resnet152", {}, 11.32, None),
]


def count_on_meta(name: str, size: int = 224, **options):
    """count() of the architecture built on PyTorch's meta device: shapes without values,
    so no seconds go into drawing the initial weights of a 60M-parameter network. The
    counts do not depend on the values; test_describe_json counts a real se_resnet50."""
    with torch.device("meta"):
        model = senet.build(name, **options)
    return count(model, size)


@pytest.mark.parametrize("name,options,gflops,params_m", PAPER)
def test_counts_match_the_paper(name, options, gflops, params_m):
    counts = count_on_meta(name, **options)
    if gflops is not None:
        assert abs(counts.gmacs - gflops) <= 0.01, counts.gmacs
    if params_m is not None:
        assert abs(counts.params / 1e6 - params_m) <= 0.1, counts.params


def test_v15_layout_costs_more_than_original():
    original = count_on_meta("resnet50").gmacs
    v15 = count_on_meta("resnet50", layout="v1.5").gmacs
    assert 4.08 < v15 < 4.12 and original < 3.87


def test_layouts_put_the_stride_where_they_say():
    original = senet.build("resnet50").layer2[0]
    v15 = senet.build("resnet50", layout="v1.5").layer2[0]
    assert original.conv1.stride == (2, 2) and original.conv2.stride == (1, 1)
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)


def test_hidden_width_rounds_down_but_never_below_one():
    assert SqueezeExcitation(64, SEConfig(reduction=16)).fc1.out_channels == 4
    assert SqueezeExcitation(40, SEConfig(reduction=16)).fc1.out_channels == 2
    assert SqueezeExcitation(10, SEConfig(reduction=16)).fc1.out_channels == 1


@pytest.mark.parametrize("gate,low,high", [("sigmoid", 0, 1), ("tanh", -1, 1), ("relu", 0, None)])
def test_gate_ranges(gate, low, high):
    torch.manual_seed(0)
    se = SqueezeExcitation(32, SEConfig(reduction=4, gate=gate))
    g = se.excitation(torch.randn(8, 32, 5, 5) * 3)
    assert g.shape == (8, 32, 1, 1)
    assert g.min() >= low and (high is None or g.max() <= high)
    assert g.std() > 0.01  # the gate depends on the input


def test_squeeze_modes_differ_and_nosqueeze_varies_over_space():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 6, 6)
    avg = SqueezeExcitation(16, SEConfig(reduction=4, squeeze="avg"))
    mx = SqueezeExcitation(16, SEConfig(reduction=4, squeeze="max"))
    mx.load_state_dict(avg.state_dict())
    assert not torch.allclose(avg.excitation(x), mx.excitation(x))
    none = SqueezeExcitation(16, SEConfig(reduction=4, squeeze="none"))
    none.load_state_dict(avg.state_dict())  # same parameters in every squeeze mode
    g = none.excitation(x)
    assert g.shape == (2, 16, 6, 6) and g.std(dim=(2, 3)).mean() > 1e-3


def test_bias_and_activation_options():
    no_bias = SqueezeExcitation(32, SEConfig(bias=False, activation="none"))
    assert no_bias.fc1.bias is None and no_bias.fc2.bias is None
    assert isinstance(no_bias.act, torch.nn.Identity)
    # without the inner ReLU the two FCs are one linear map: gate(fc2(fc1(s)))
    s = torch.randn(3, 32)
    w = no_bias.fc2.weight.flatten(1) @ no_bias.fc1.weight.flatten(1)
    expected = torch.sigmoid(s @ w.T)
    got = no_bias.excitation(s[:, :, None, None].expand(3, 32, 4, 4).contiguous())
    torch.testing.assert_close(got.flatten(1), expected, rtol=1e-5, atol=1e-6)


def _open_gates(model):
    """Make every SE gate output exactly 1, so the SE model must equal its plain twin."""
    for se in se_blocks(model).values():
        torch.nn.init.zeros_(se.fc2.weight)
        torch.nn.init.constant_(se.fc2.bias, 100.0)


@pytest.mark.parametrize("name", ["resnet20", "resnet164", "resnet50"])
@pytest.mark.parametrize("placement", ["standard", "pre", "post", "identity", "3x3"])
def test_an_open_gate_reduces_to_the_plain_network(name, placement):
    torch.manual_seed(0)
    plain = senet.build(name).eval()
    se = senet.build(f"se_{name}", placement=placement).eval()
    _open_gates(se)
    plain_state = plain.state_dict()
    se.load_state_dict({**se.state_dict(), **plain_state})
    size = 64 if name == "resnet50" else 32
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(se(x), plain(x), rtol=1e-4, atol=1e-4)


def test_placement_sets_the_se_width():
    block = senet.build("se_resnet50", placement="pre").layer2[0]
    assert block.se.channels == 256  # the unit's input
    block = senet.build("se_resnet50", placement="3x3").layer2[0]
    assert block.se.channels == 128  # the 3x3's output, C/4
    block = senet.build("se_resnet20", placement="3x3").layer3[0]
    assert block.se.channels == 64
    assert senet.build("se_resnet50").layer4[2].se.channels == 2048


def test_post_applies_se_after_the_sum():
    torch.manual_seed(0)
    model = senet.build("se_resnet20", placement="post").eval()
    unit = model.layer1[0]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        pre = unit.relu(unit.bn1(x))
        summed = unit.branch(pre) + x
        torch.testing.assert_close(unit(x), unit.se(summed))


@pytest.mark.parametrize("name", ["resnet20", "resnet164"])
def test_cifar_se_pre_leaves_the_projection_shortcut_untouched(name):
    """Fig. 5(c): SE-PRE rescales the residual branch only. With the branch's last conv
    zeroed, a projection unit outputs its shortcut alone, which must then equal the plain
    unit's shortcut from x, whatever the (here random, far from 1) SE gate does."""
    torch.manual_seed(0)
    plain = senet.build(name).eval()
    se = senet.build(f"se_{name}", placement="pre").eval()
    se.load_state_dict({**se.state_dict(), **plain.state_dict()})
    unit, twin = se.layer2[0], plain.layer2[0]
    assert unit.shortcut is not None  # the first unit of stage 2 projects
    last = unit.conv3 if hasattr(unit, "conv3") else unit.conv2
    torch.nn.init.zeros_(last.weight)
    x = torch.randn(2, unit.bn1.num_features, 16, 16)
    with torch.no_grad():
        assert (unit.se.excitation(unit.relu(unit.bn1(x))) - 1).abs().max() > 0.1
        expected = twin.shortcut(twin.relu(twin.bn1(x)))
        torch.testing.assert_close(unit(x), expected)


def test_se_names_follow_the_paper():
    names = list(se_blocks(senet.build("se_resnet50")))
    assert len(names) == 16 and names[0] == "SE_2_1" and names[-1] == "SE_5_3"
    assert "SE_4_6" in names and "SE_3_4" in names
    cifar = list(se_blocks(senet.build("se_resnet110")))
    assert len(cifar) == 54 and cifar[0] == "SE_1_1" and cifar[-1] == "SE_3_18"
    only4 = list(se_blocks(senet.build("se_resnet50", stages="4")))
    assert only4 == [f"SE_4_{b}" for b in range(1, 7)]
    assert se_blocks(senet.build("resnet50")) == {}


@pytest.mark.slow
def test_every_registered_name_builds_and_runs():
    for name in MODEL_NAMES:
        if "50" in name or "101" in name or "152" in name:
            continue  # the ImageNet ones are exercised above
        model = senet.build(name)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name,options,fragment", [
    ("resnet51", {}, "valid models: resnet50"),
    ("se_resnet50", {"squeeze": "median"}, "valid values are avg, max, none"),
    ("se_resnet50", {"gate": "softmax"}, "sigmoid, tanh, relu"),
    ("se_resnet50", {"reduction": 0}, "reduction"),
    ("se_resnet50", {"reduction": "x"}, "reduction"),
    ("se_resnet50", {"bias": "maybe"}, "true or false"),
    ("se_resnet20", {"stages": "4"}, "1,2,3"),
    ("se_resnet20", {"layout": "v1.5"}, "ImageNet models only"),
    ("resnet50", {"reduction": 8}, "se_resnet50"),
    ("se_resnet50", {"colour": 1}, "valid options"),
])
def test_bad_names_and_options_are_one_line_errors(name, options, fragment):
    with pytest.raises(SenetError) as err:
        senet.build(name, **options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_he_initialisation():
    torch.manual_seed(0)
    conv = senet.build("resnet50").layer3[0].conv2  # 3x3, 256 -> 256
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - math.sqrt(2 / fan_out)) < 0.002


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_released_layout_loads_with_identical_logits():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model("legacy_seresnet50", pretrained=False).eval()
    _randomise_bn(reference)
    ours = senet.build("se_resnet50", weights=reference.state_dict()).eval()
    assert ours.senet_options["stem"] == "released" and ours.senet_options["bias"] is True
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff <= 1e-4


def test_load_weights_names_missing_and_unexpected_keys(tmp_path):
    model = senet.build("se_resnet20")
    state = model.state_dict()
    state.pop("layer1.0.se.fc1.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(SenetError) as err:
        senet.load_weights(senet.build("se_resnet20"), state)
    assert "layer1.0.se.fc1.weight" in str(err.value) and "extra.weight" in str(err.value)
    path = tmp_path / "w.pt"
    torch.save(senet.build("se_resnet20").state_dict(), path)
    loaded = senet.build("se_resnet20", weights=str(path))
    assert isinstance(loaded, torch.nn.Module)
    with pytest.raises(SenetError, match="weights file not found"):
        senet.build("se_resnet20", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(SenetError, match="unexpected keys: layer1.0.se.fc1.bias"):
        senet.build("se_resnet20", weights=str(path), bias=False)
    with pytest.raises(SenetError, match="shape mismatch"):
        senet.build("se_resnet20", weights=str(path), reduction=4)


def test_probe_records_gates_and_leaves_no_hooks():
    torch.manual_seed(0)
    model = senet.build("se_resnet20", squeeze="none").eval()
    with torch.no_grad(), record_excitations(model, keep_maps=True) as rec:
        model(torch.randn(3, 3, 32, 32))
    assert rec.gates["SE_3_3"].shape == (3, 64)
    torch.testing.assert_close(rec.gates["SE_2_1"], rec.maps["SE_2_1"].mean((2, 3)))
    assert all(not se.gate._forward_hooks for se in se_blocks(model).values())


def test_excitation_stats_match_a_direct_computation():
    torch.manual_seed(0)
    model = senet.build("se_resnet20").eval()
    x, y = torch.randn(12, 3, 32, 32), torch.tensor([0, 1, 2] * 4)
    stats = excitation_stats(model, [(x[:5], y[:5]), (x[5:], y[5:])], ["a", "b", "c"])
    with torch.no_grad(), record_excitations(model) as rec:
        model(x)
    gate = rec.gates["SE_2_2"]
    assert stats.classes == ["a", "b", "c"] and list(stats.blocks)[0] == "SE_1_1"
    block = stats.blocks["SE_2_2"]
    assert list(block.count) == [4, 4, 4]
    torch.testing.assert_close(torch.from_numpy(block.mean[1]), gate[y == 1].mean(0),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(block.std[2]),
                               gate[y == 2].std(0, unbiased=False), rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(block.all_mean), gate.mean(0),
                               rtol=1e-5, atol=1e-6)


def test_describe_json(capsys):
    assert cli_main(["describe", "se_resnet50", "--set", "reduction=8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 30603912 and abs(info["gmacs"] - 3.874) < 0.001
    assert cli_main(["describe", "se_resnet50", "--set", "squeeze=median"]) == 2
    assert "squeeze" in capsys.readouterr().err


# Per-stage reduction: one r per stage, "none" for a stage without SE.


def _params(name: str, **options) -> int:
    return count(senet.build(name, **options), 32).params


def test_uniform_per_stage_reduction_is_the_single_reduction():
    assert _params("se_resnet20", reduction="16,16,16") == _params("se_resnet20", reduction=16)
    resolved = senet.models.validate_options("se_resnet20", {"reduction": "16,16,16"})
    assert resolved["reduction"] == 16 and resolved["stages"] == "1,2,3"


def test_none_stages_are_the_stages_option():
    per_stage = senet.models.validate_options("se_resnet20", {"reduction": "4,none,none"})
    single = senet.models.validate_options("se_resnet20", {"reduction": 4, "stages": "1"})
    assert per_stage == single
    assert _params("se_resnet20", reduction="4,none,none") == _params(
        "se_resnet20", reduction=4, stages="1"
    )
    # Stage 1 alone, r = 4 on 16 channels, with bias: 3 blocks * (16*4 + 4 + 4*16 + 16) = 444.
    assert _params("se_resnet20", reduction="4,none,none") - _params("resnet20") == 444


def test_mixed_per_stage_reduction_builds_each_stage_with_its_own_r():
    model = senet.build("se_resnet20", reduction=[2, "none", 32])
    widths = {name: se.fc1.out_channels for name, se in se_blocks(model).items()}
    assert widths == {"SE_1_1": 8, "SE_1_2": 8, "SE_1_3": 8, "SE_3_1": 2, "SE_3_2": 2, "SE_3_3": 2}
    assert model.senet_options["reduction"] == "2,none,32"
    assert model.senet_options["stages"] == "1,3"
    imagenet = senet.models.validate_options("se_resnet50", {"reduction": "4, 8, 16, NONE"})
    assert imagenet["reduction"] == "4,8,16,none" and imagenet["stages"] == "2,3,4"


@pytest.mark.parametrize(
    "options,fragment",
    [
        ({"reduction": "4,8"}, "expected 3 comma-separated values"),
        ({"reduction": "4,0,8"}, "bad value '0'"),
        ({"reduction": "4,x,8"}, "bad value 'x'"),
        ({"reduction": "none,none,none"}, "use the plain model name"),
        ({"reduction": "4,8,none", "stages": "1,3"}, "stages='1,3' disagrees"),
    ],
)
def test_per_stage_reduction_errors(options, fragment):
    with pytest.raises(SenetError, match="option") as err:
        senet.models.validate_options("se_resnet20", options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_per_stage_reduction_with_consistent_stages_is_accepted():
    resolved = senet.models.validate_options(
        "se_resnet20", {"reduction": "4,8,none", "stages": "2,1"}
    )
    assert resolved["reduction"] == "4,8,none" and resolved["stages"] == "1,2"


def test_describe_json_per_stage(capsys):
    assert cli_main(["describe", "se_resnet20", "--set", "reduction=4,8,none", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["options"]["reduction"] == "4,8,none"
    assert info["options"]["stages"] == "1,2"
    assert info["se_blocks"] == 6
    assert info["params"] == _params("se_resnet20", reduction="4,8,none")
    assert _params("se_resnet20", reduction=4, stages="1") < info["params"]
