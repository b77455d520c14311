"""Packs of different grid points (SE choices per copy, reduction ratios zero-padded)
against each point trained alone, on CPU."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from test_packed import LR, MOMENTUM, WD, _sgd_packed

import senet
from senet.engine.pack_rules import key_of_resolved, pack_groups, why_not_one_pack
from senet.engine.packed import (
    copy_param_counts,
    pack,
    pack_inputs,
    pack_optimizer_state,
    pack_refusal,
    unpack,
    unpack_optimizer_state,
)
from senet.engine.packed_se import PaddedSEConv
from senet.errors import SenetError
from senet.models.cifar import CifarResNet
from senet.models.flops import count
from senet.models.se import SEConfig
from senet.settings.config import TrainConfig

# One copy per row: the first is the r = 4 model of the brief; the others differ from it in
# every packable choice at once (r 2 and 8 pad to the widest, r 2).
POINTS = [
    SEConfig(reduction=4),
    SEConfig(reduction=2, squeeze="max", activation="none", gate="tanh", bias=False),
    SEConfig(reduction=8, gate="relu"),
]


def _tiny(se: SEConfig) -> CifarResNet:
    # widths 8/16/32: hidden units 2/4/8 at r = 4, 4/8/16 at r = 2, 1/2/4 at r = 8.
    return CifarResNet("basic", 1, widths=(8, 16, 32), se=se, stem_channels=8)


def _models(points=POINTS, dtype=torch.float64):
    models = []
    for seed, se in enumerate(points):
        torch.manual_seed(10 + seed)
        m = _tiny(se).to(dtype)
        with torch.no_grad():  # non-zero SE biases and BN terms, so that their packing shows
            for name, p in m.named_parameters():
                if name.endswith("bias") or "bn" in name:
                    p.add_(torch.rand_like(p) * 0.2 - 0.1)
        models.append(m)
    return models


def _batches(steps, k, dtype=torch.float64, n=4, size=16):
    gen = torch.Generator().manual_seed(0)
    return [([torch.randn(n, 3, size, size, generator=gen, dtype=dtype) for _ in range(k)],
             [torch.randint(0, 10, (n,), generator=gen) for _ in range(k)])
            for _ in range(steps)]


def _train_alone(model, batches, k):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    for xs, ys in batches:
        loss = F.cross_entropy(model(xs[k]), ys[k])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


def _padded_layers(packed):
    return [m for m in packed.modules() if isinstance(m, PaddedSEConv)]


def _padding_of(conv: PaddedSEConv, tensor: torch.Tensor, name: str, k: int) -> torch.Tensor:
    """Copy k's padded entries of ``tensor`` (everything of its block but its own part)."""
    if name == "bias":
        return tensor.view(conv.copies, conv.out_max)[k, conv.outs[k]:]
    block = tensor.view(conv.copies, conv.out_max, conv.in_max, 1, 1)[k].clone()
    block[:conv.outs[k], :conv.ins[k]] = 0
    return block


def test_padded_r4_copy_trains_exactly_like_r4_alone():
    steps = 4
    models = _models()
    packed = pack(models)
    assert [c.outs for c in _padded_layers(packed)][:2] == [[2, 4, 1], [8, 8, 8]]
    batches = _batches(steps, len(models), n=2)
    opt = _sgd_packed(packed, batches)
    alone = [_train_alone(m, batches, k) for k, m in enumerate(models)]

    for k, (state, model) in enumerate(zip(unpack(packed), models, strict=True)):
        assert state.keys() == model.state_dict().keys()  # no padded or absent bias keys
        for key, value in model.state_dict().items():
            assert state[key].shape == value.shape, key
            # float64: the grouped and padded sums round differently, nothing else.
            torch.testing.assert_close(state[key], value, atol=1e-10, rtol=1e-8,
                                       msg=f"copy {k} {key}")
    start = _models()[0].layer2[0].se.fc1.weight
    assert (unpack(packed)[0]["layer2.0.se.fc1.weight"] - start).abs().max() > 1e-4  # moved

    # The padding (and the masked bias of the no-bias copy) is exactly zero after the
    # steps, in the weights and in the momentum buffers alike.
    checked = 0
    for conv in _padded_layers(packed):
        for name, p in conv.named_parameters():
            buf = opt.state[p]["momentum_buffer"]
            for k in range(conv.copies):
                for t in (p, buf):
                    if name == "bias" and not conv.has_bias[k]:
                        own = t.view(conv.copies, conv.out_max)[k]
                        assert torch.equal(own, torch.zeros_like(own))
                        checked += 1
                    elif conv.outs[k] < conv.out_max or conv.ins[k] < conv.in_max:
                        pad = _padding_of(conv, t, name, k)
                        assert torch.equal(pad, torch.zeros_like(pad))
                        checked += 1
    assert checked > 20

    # Each copy's momentum is its own optimizer's.
    for k, state in enumerate(unpack_optimizer_state(packed, opt)):
        ref = alone[k].state_dict()
        assert state["param_groups"][0]["params"] == ref["param_groups"][0]["params"]
        for pid, entry in ref["state"].items():
            torch.testing.assert_close(state["state"][pid]["momentum_buffer"],
                                       entry["momentum_buffer"], atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_mixed_pack_logits_match_each_point_alone(mode):
    models = _models(dtype=torch.float32)
    packed = pack(models)
    xs, _ = _batches(1, len(models), torch.float32)[0]
    for m in [*models, packed]:
        m.train(mode == "train")
    expected = torch.stack([m(x) for m, x in zip(models, xs, strict=True)], dim=1)
    torch.testing.assert_close(packed(pack_inputs(xs)), expected, atol=1e-5, rtol=1e-5)


def test_unpacked_states_load_into_plain_builds_and_counts_are_each_copys_own():
    options = [dict(reduction=4), dict(reduction=2, bias=False, gate="tanh"),
               dict(reduction="4,8,16", squeeze="max")]
    models = []
    for seed, opts in enumerate(options):
        torch.manual_seed(seed)
        models.append(senet.build("se_resnet20", **opts))
    packed = pack(models)
    assert packed.copy_options[1]["bias"] is False and "bias" not in packed.senet_options
    assert packed.senet_options["placement"] == "standard"
    own = [sum(p.numel() for p in m.parameters()) for m in models]
    assert copy_param_counts(packed) == own == [count(m, 32).params for m in models]
    assert len(set(own)) == 3  # the copies really differ
    padded_total = sum(p.numel() for p in packed.parameters())
    assert padded_total > sum(own)  # the pack holds padding that no copy counts
    for opts, model, state in zip(options, models, unpack(packed), strict=True):
        fresh = senet.build("se_resnet20", **opts)
        fresh.load_state_dict(state)  # strict: exactly the plain model's keys and shapes
        for key, value in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key


def test_mixed_pack_resumes_exactly_from_per_copy_checkpoints():
    models = _models()
    packed = pack(models)
    batches = _batches(3, len(models))
    opt = _sgd_packed(packed, batches[:2])
    weights, opt_states = unpack(packed), unpack_optimizer_state(packed, opt)
    # Each copy's state goes through its own plain model and optimizer, as a checkpoint.
    fresh = []
    for se, w, o in zip(POINTS, weights, opt_states, strict=True):
        m = _tiny(se).double()
        m.load_state_dict(w)
        plain_opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
        plain_opt.load_state_dict(o)
        fresh.append((m, plain_opt.state_dict()))
    resumed = pack([m for m, _ in fresh])
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=LR, momentum=MOMENTUM,
                                  weight_decay=WD)
    pack_optimizer_state(resumed, resumed_opt, [s for _, s in fresh])
    _sgd_packed(packed, batches[2:], opt)
    _sgd_packed(resumed, batches[2:], resumed_opt)
    for a, b in zip(unpack(packed), unpack(resumed), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("other", "reason"), [
    (dict(placement="post"), r"differ in option placement \('standard' vs 'post'\)"),
    (dict(stages="2,3"), r"differ in option stages \('1,2,3' vs '2,3'\)"),
    (dict(squeeze="none"), r"model 1 has no squeeze, model 0 a pooled squeeze"),
])
def test_models_that_cannot_share_a_pack_say_why_in_one_line(other, reason):
    why = pack_refusal([senet.build("se_resnet20"), senet.build("se_resnet20", **other)])
    assert why is not None and "\n" not in why
    assert re.search(reason, why), why
    with pytest.raises(SenetError, match=reason):
        pack([senet.build("se_resnet20"), senet.build("se_resnet20", **other)])
    assert pack_refusal([senet.build("se_resnet20"),
                         senet.build("se_resnet20", reduction=2, gate="relu")]) is None


def _cfg(seed=0, **options):
    return TrainConfig("se_resnet110", model_options=options, dataset="cifar10",
                       preset="cifar-preact-ablation", seed=seed)


def test_configs_of_a_reduction_and_gate_grid_share_one_pack():
    cfgs = [_cfg(s, reduction=r) for r in (2, 4, 8, 16, 32) for s in range(3)]
    cfgs += [_cfg(s, gate=g) for g in ("relu", "tanh") for s in range(3)]
    assert why_not_one_pack(cfgs) is None


@pytest.mark.parametrize(("other", "reason"), [
    (_cfg(1, placement="post"), r"differ in placement \('standard' vs 'post'\)"),
    (TrainConfig("resnet110", dataset="cifar10", preset="cifar-preact-ablation"),
     r"differ in model \('se_resnet110' vs 'resnet110'\)"),
    (_cfg(1, squeeze="none"), r"differ in squeeze kind \(False vs True\)"),
    (TrainConfig("se_resnet110", dataset="cifar10", preset="cifar-preact-ablation", lr=0.05),
     r"differ in lr \(0\.1 vs 0\.05\)"),
    (_cfg(0, reduction=16), r"are the same training \(settings and seed\)"),
    (TrainConfig("se_resnet110", dataset="cifar10", preset="cifar-preact-ablation",
                 compile=True), r"differ in compile \(None vs True\)"),
])
def test_configs_that_cannot_share_a_pack_say_why_in_one_line(other, reason):
    why = why_not_one_pack([_cfg(0), other])
    assert why is not None and "\n" not in why
    assert re.search(reason, why), why


def test_plateau_presets_and_shared_out_folders_are_refused():
    plateau = [TrainConfig("se_resnet50", dataset="imagenet", preset="imagenet-ablation-plateau",
                           seed=s) for s in range(2)]
    assert "plateau schedule" in why_not_one_pack(plateau)
    same_out = [_cfg(0), _cfg(1)]
    same_out[0].out = same_out[1].out = "runs/x"
    assert "own" in why_not_one_pack(same_out)


def test_pack_groups_fill_packs_in_order():
    from senet.settings.identity import resolved_settings

    def key(seed, **opts):
        settings = {"model": "se_resnet110", "dataset": "cifar10",
                    "preset": "cifar-preact-ablation", **opts}
        return key_of_resolved(resolved_settings(settings), seed, {}, f"{opts} s{seed}")

    keys = [key(0, reduction=4), key(0, placement="post"), key(1, reduction=4),
            key(0, reduction=8), key(1, placement="post")]
    assert pack_groups(keys, 2) == [[0, 2], [1, 4], [3]]
    assert pack_groups(keys, 8) == [[0, 2, 3], [1, 4]]


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device: the packed grid is checked there in float32")
def test_packed_grid_on_cuda_trains_like_each_point_alone():
    # float32 without TF32: grouped and dense cuDNN kernels sum in other orders, so the
    # bound is float32 rounding grown over the steps, as test_packed's CPU float32 check.
    torch.backends.cudnn.allow_tf32 = False
    models = [m.cuda() for m in _models(dtype=torch.float32)]
    packed = pack(models)
    batches = [([x.cuda() for x in xs], [y.cuda() for y in ys])
               for xs, ys in _batches(4, len(models), torch.float32)]
    _sgd_packed(packed, batches)
    for k, m in enumerate(models):
        _train_alone(m, batches, k)
    for state, model in zip(unpack(packed), models, strict=True):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(state[key], value, atol=1e-4, rtol=1e-4)
