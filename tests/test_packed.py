"""The packed model (K copies as one) against K separate models, on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import senet
from senet.engine.packed import (
    check_pack_size,
    pack,
    pack_inputs,
    pack_optimizer_state,
    pack_targets,
    packed_loss,
    repeat_inputs,
    unpack,
    unpack_optimizer_state,
    unpack_tensor,
)
from senet.errors import SenetError
from senet.models.cifar import CifarResNet
from senet.models.imagenet import ImageNetResNet
from senet.models.se import SEConfig

K = 3
LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def _se_resnet20():
    return senet.build("se_resnet20")


def _bottleneck(squeeze="max", placement="pre", gate="sigmoid"):
    # A CIFAR bottleneck net (the se_resnet164 unit) at tiny width and depth.
    se = SEConfig(reduction=4, squeeze=squeeze, placement=placement, gate=gate)
    return CifarResNet("bottleneck", 2, widths=(4, 8, 16), se=se, stem_channels=8)


def _bottleneck_noise():
    return _bottleneck(squeeze="none", placement="identity", gate="tanh")


def _wrn_3x3():
    se = SEConfig(reduction=2, placement="3x3", activation="none", bias=False)
    return CifarResNet("basic", 1, widths=(8, 16, 32), se=se, stem_channels=8)


def _imagenet_post():
    # Every ImageNet layer type (7x7 stem, max-pool, downsample) with SE after the add.
    return ImageNetResNet(50, num_classes=7, layout="v1.5", se=SEConfig(placement="post"))


BUILDERS = {
    "se_resnet20": _se_resnet20,
    "bottleneck_max_pre": _bottleneck,
    "bottleneck_none_identity": _bottleneck_noise,
    "basic_3x3_nobias": _wrn_3x3,
}


def _copies(builder, dtype=torch.float32):
    models = []
    for seed in range(K):
        torch.manual_seed(100 + seed)  # each copy its own initialisation
        # Non-trivial BN statistics and affine terms, so that their packing is tested too.
        m = builder().to(dtype)
        with torch.no_grad():
            for bn in [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]:
                bn.running_mean.uniform_(-0.1, 0.1)
                bn.running_var.uniform_(0.9, 1.1)
                bn.weight.uniform_(0.8, 1.2)
                bn.bias.uniform_(-0.1, 0.1)
        models.append(m)
    return models


def _batches(n, dtype, classes=10, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 3, size, size, generator=gen, dtype=dtype) for _ in range(K)]
    ys = [torch.randint(0, classes, (n,), generator=gen) for _ in range(K)]
    return xs, ys


@pytest.mark.parametrize("name", list(BUILDERS))
def test_pack_unpack_round_trip_gives_each_copy_its_own_weights(name):
    models = _copies(BUILDERS[name])
    states = unpack(pack(models))
    assert len(states) == K
    for model, state in zip(models, states, strict=True):
        fresh = BUILDERS[name]()
        fresh.load_state_dict(state)  # strict: same keys and shapes as a plain model
        for key, value in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key
    # The copies really differ, so the test above could fail.
    assert not torch.equal(states[0]["conv1.weight"], states[1]["conv1.weight"])


def test_unpacked_weights_load_into_a_plain_build():
    models = [senet.build("se_resnet20", squeeze="max", placement="post") for _ in range(2)]
    for state in unpack(pack(models)):
        senet.build("se_resnet20", squeeze="max", placement="post").load_state_dict(state)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_packed_logits_match_separate_models(name, mode):
    models = _copies(BUILDERS[name])
    packed = pack(models)
    xs, ys = _batches(4, torch.float32)
    for m in [*models, packed]:
        m.train(mode == "train")
    expected = torch.stack([m(x) for m, x in zip(models, xs, strict=True)], dim=1)
    got = packed(pack_inputs(xs))
    assert got.shape == (4, K, 10)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if mode == "train":  # BN running statistics moved the same way
        for state, model in zip(unpack(packed), models, strict=True):
            for key, value in model.state_dict().items():
                torch.testing.assert_close(state[key], value, atol=1e-6, rtol=1e-6)


def test_packed_imagenet_model_matches_separate_models():
    # float64: at 64x64 and batch 2, stage 5's BN normalises over 8 values per channel,
    # which turns float32 rounding into 3e-4 differences (float64: 1e-12). At 32x32 (2
    # values per channel) it is ill-conditioned even in float64.
    torch.manual_seed(0)
    models = [_imagenet_post().double() for _ in range(2)]
    packed = pack(models)
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(2, 3, 64, 64, generator=gen, dtype=torch.float64) for _ in range(2)]
    expected = torch.stack([m(x) for m, x in zip(models, xs, strict=True)], dim=1)
    torch.testing.assert_close(packed(pack_inputs(xs)), expected, atol=1e-10, rtol=1e-8)


def test_evaluation_repeats_one_batch_for_every_copy():
    models = [m.eval() for m in _copies(_se_resnet20)]
    packed = pack(models)
    x = torch.randn(3, 3, 32, 32)
    expected = torch.stack([m(x) for m in models], dim=1)
    torch.testing.assert_close(packed(repeat_inputs(x, K)), expected, atol=1e-5, rtol=1e-5)


def _sgd_packed(packed, batches, opt=None):
    """SGD steps on the packed model, one per (xs, ys): each copy gets its own batch;
    ``opt`` (by default a new SGD) is returned."""
    opt = opt or torch.optim.SGD(packed.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    for xs, ys in batches:
        total, _ = packed_loss(packed(pack_inputs(xs)), pack_targets(ys))
        opt.zero_grad()
        total.backward()
        opt.step()
    return opt


def _train_separately(models, batches, steps):
    opts = [torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
            for m in models]
    for step in range(steps):
        xs, ys = batches[step]
        for m, opt, x, y in zip(models, opts, xs, ys, strict=True):
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return opts


@pytest.mark.parametrize("name", ["se_resnet20", "bottleneck_max_pre",
                                  "bottleneck_none_identity"])
def test_gradients_and_three_sgd_steps_match_separate_models(name):
    # float64, so that the comparison is about the algebra and not about rounding.
    dtype = torch.float64
    models = _copies(BUILDERS[name], dtype)
    packed = pack(models)
    batches = [_batches(4, dtype, seed=s) for s in range(3)]

    # Gradients of one step: the packed sum's gradient, sliced, is each copy's own.
    xs, ys = batches[0]
    total, per_copy = packed_loss(packed(pack_inputs(xs)), pack_targets(ys))
    total.backward()
    separate = [F.cross_entropy(m(x), y) for m, x, y in zip(models, xs, ys, strict=True)]
    for loss in separate:
        loss.backward()
    torch.testing.assert_close(per_copy, torch.stack(separate).detach(), atol=1e-12, rtol=0)
    grads = [dict(m.named_parameters()) for m in models]
    for key, p in packed.body.named_parameters():
        for k, part in enumerate(unpack_tensor(packed, key, p.grad)):
            torch.testing.assert_close(part, grads[k][key].grad, atol=1e-10, rtol=1e-8)

    # Three SGD steps with momentum and weight decay, each copy fed its own batches.
    models = _copies(BUILDERS[name], dtype)
    packed = pack(models)
    opt = _sgd_packed(packed, batches)
    separate_opts = _train_separately(models, batches, 3)
    for state, model in zip(unpack(packed), models, strict=True):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(state[key], value, atol=1e-10, rtol=1e-8)
    moved = (unpack(packed)[0]["conv1.weight"] - _copies(BUILDERS[name], dtype)[0].conv1.weight)
    assert moved.abs().max() > 1e-3  # the steps really changed the weights

    # Each copy's optimizer state (momentum) matches the separate optimizer's.
    for k, state in enumerate(unpack_optimizer_state(packed, opt)):
        ref = separate_opts[k].state_dict()
        assert state["param_groups"][0]["lr"] == LR
        assert state["param_groups"][0]["params"] == ref["param_groups"][0]["params"]
        for pid, entry in ref["state"].items():
            torch.testing.assert_close(state["state"][pid]["momentum_buffer"],
                                       entry["momentum_buffer"], atol=1e-10, rtol=1e-8)


def test_float32_sgd_steps_stay_within_tolerance():
    models = _copies(_se_resnet20)
    packed = pack(models)
    batches = [_batches(4, torch.float32, seed=s) for s in range(3)]
    _sgd_packed(packed, batches)
    _train_separately(models, batches, 3)
    for state, model in zip(unpack(packed), models, strict=True):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(state[key], value, atol=1e-4, rtol=1e-4)


def test_optimizer_state_round_trip_resumes_exactly():
    dtype = torch.float64
    models = _copies(_bottleneck, dtype)
    packed = pack(models)
    opt = torch.optim.SGD(packed.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    batches = [_batches(4, dtype, seed=s) for s in range(2)]

    def step(model, optimizer, xs, ys):
        total, _ = packed_loss(model(pack_inputs(xs)), pack_targets(ys))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    step(packed, opt, *batches[0])
    # Per-seed checkpoints, then a resume into a freshly packed model and optimizer.
    weights, opt_states = unpack(packed), unpack_optimizer_state(packed, opt)
    fresh = []
    for state in weights:
        m = _bottleneck().to(dtype)
        m.load_state_dict(state)
        fresh.append(m)
    resumed = pack(fresh)
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=LR, momentum=MOMENTUM,
                                  weight_decay=WD)
    pack_optimizer_state(resumed, resumed_opt, opt_states)
    step(packed, opt, *batches[1])
    step(resumed, resumed_opt, *batches[1])
    for a, b in zip(unpack(packed), unpack(resumed), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("bad", [0, -2, "x", 1.5])
def test_pack_size_must_be_a_positive_integer(bad):
    with pytest.raises(SenetError, match=r"^--pack .*expected an integer >= 1") as err:
        check_pack_size(bad)
    assert "\n" not in str(err.value)


def test_packing_no_models_is_an_error():
    with pytest.raises(SenetError, match="expected an integer >= 1"):
        pack([])


def test_packing_models_with_different_settings_is_a_one_line_error():
    # The reduction ratio packs (tests/test_packed_grid.py); the placement does not.
    a = senet.build("se_resnet20", placement="standard")
    b = senet.build("se_resnet20", placement="post")
    with pytest.raises(SenetError, match=r"differ in option placement \('standard' vs "
                                         r"'post'\), which changes the layers") as err:
        pack([a, b])
    assert "\n" not in str(err.value)
    with pytest.raises(SenetError, match="model 1 is resnet20, model 0 is se_resnet20"):
        pack([senet.build("se_resnet20"), senet.build("resnet20")])
    with pytest.raises(SenetError, match="other layers or shapes"):
        pack([_bottleneck(), _bottleneck(placement="post")])


def test_pack_of_one_is_the_model_itself():
    torch.manual_seed(0)
    model = senet.build("se_resnet20").eval()
    packed = pack([model]).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(packed(pack_inputs([x]))[:, 0], model(x), atol=1e-5, rtol=1e-5)
