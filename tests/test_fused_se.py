"""The fused SE path (regional torch.compile) against the eager block it replaces."""

from __future__ import annotations

import copy

import pytest
import torch

import senet
from senet.engine.packed import pack, pack_inputs
from senet.errors import SenetError
from senet.models.fused_se import fuse_se, fused_region

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device: the fused SE path is "
                                                 "compared with eager in bf16 there")


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def _forward_backward(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().square().mean().backward()
    return out.detach()


def _check_same(eager, fused, x, atol, rtol):
    for mode in ("train", "eval"):
        eager.train(mode == "train")
        fused.train(mode == "train")
        if mode == "train":
            torch.testing.assert_close(_forward_backward(fused, x), _forward_backward(eager, x),
                                       atol=atol, rtol=rtol)
            for a, b in zip(_grads(fused), _grads(eager), strict=True):
                torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
        else:
            with torch.no_grad():
                torch.testing.assert_close(fused(x), eager(x), atol=atol, rtol=rtol)


@pytest.mark.parametrize("region", ["se", pytest.param("block", marks=pytest.mark.slow)])
def test_fused_se_changes_nothing_on_cpu(region):
    # SE in stage 1 only: one block shape, so two graphs (training, evaluation) to trace.
    # aot_eager traces forward and backward as the CUDA path does, with eager kernels.
    torch.manual_seed(0)
    eager = senet.build("se_resnet20", stages="1", squeeze="max")
    fused = copy.deepcopy(eager)
    assert fuse_se(fused, region=region, backend="aot_eager") == 3
    assert fused_region(fused) == region and fused_region(eager) is None
    assert fuse_se(fused, region=region, backend="aot_eager") == 0  # already fused
    x = torch.randn(4, 3, 32, 32)
    _check_same(eager, fused, x, atol=1e-6, rtol=1e-5)
    # The compiled code really ran (a wrapper that fell back to eager would pass too).
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2


@pytest.mark.slow
def test_fused_se_on_a_packed_grid_changes_nothing_on_cpu():
    models = []
    for seed, opts in enumerate([dict(reduction=4), dict(reduction=2, gate="tanh")]):
        torch.manual_seed(seed)
        models.append(senet.build("se_resnet20", stages="1", **opts))
    eager = pack(models)
    fused = pack(models)
    assert fuse_se(fused, backend="aot_eager") == 3
    x = pack_inputs([torch.randn(2, 3, 32, 32) for _ in models])
    _check_same(eager, fused, x, atol=1e-6, rtol=1e-5)


def test_fused_se_refuses_bad_regions_and_models_without_se():
    with pytest.raises(SenetError, match=r"region 'tail': expected one of se, block"):
        fuse_se(senet.build("se_resnet20"), region="tail")
    with pytest.raises(SenetError, match="ResNet has no SE block to fuse; use an se_ model"):
        fuse_se(senet.build("resnet20"))


@needs_cuda
@pytest.mark.parametrize("region", ["se", "block"])
@pytest.mark.parametrize("name", ["se_resnet20", "se_resnet50"])
def test_fused_se_matches_eager_on_cuda_in_bf16(name, region):
    """Inductor against eager under bf16 autocast. Tolerance: bf16 keeps 8 bits of
    mantissa (relative step 2^-8 = 0.4 %), and the fused kernels round once where eager
    rounds after every op, so outputs and gradients may differ by a few bf16 steps:
    atol 5e-2, rtol 5e-2 on values of order one."""
    torch.manual_seed(0)
    size = 32 if name == "se_resnet20" else 64
    eager = senet.build(name).cuda().to(memory_format=torch.channels_last)
    fused = copy.deepcopy(eager)
    fuse_se(fused, region=region)
    x = torch.randn(8, 3, size, size, device="cuda").contiguous(
        memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _check_same(eager, fused, x, atol=5e-2, rtol=5e-2)


@needs_cuda
def test_fused_se_runs_inside_the_captured_step():
    from senet.engine.step import make_optimizer, make_train_step

    losses = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = senet.build("se_resnet20").cuda().to(memory_format=torch.channels_last)
        if fused:
            fuse_se(model)
        opt = make_optimizer(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4,
                             nesterov=False, device="cuda", graphs=True)
        step = make_train_step(model, opt, amp_dtype=torch.bfloat16, graphs=True)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(16, 3, 32, 32, generator=gen).cuda().contiguous(
            memory_format=torch.channels_last)
        y = torch.randint(0, 10, (16,), generator=gen).cuda()
        for _ in range(8):  # 3 warm-up steps (compiling), a capture, replays
            step(x, y, 0.05)
        assert step.graph is not None
        losses.append(step.end_epoch()[0]["train_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=5e-2)


def test_fused_se_is_an_execution_setting_that_keeps_the_training_key():
    from senet.settings.config import TrainConfig
    from senet.settings.identity import training_key

    assert TrainConfig(model="se_resnet20").fused_se is False
    base = {"model": "se_resnet20", "dataset": "builtin", "preset": "fast"}
    assert training_key({**base, "fused_se": True}, 0) == training_key(base, 0)
