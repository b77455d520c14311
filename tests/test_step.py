"""The sync-free training step and evaluation: eager on CPU; graph paths on CUDA only."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from senet.engine.packed import pack, pack_inputs, pack_targets, unpack
from senet.engine.step import (
    NonFiniteLoss,
    make_evaluator,
    make_graph_ready,
    make_optimizer,
    make_train_step,
)
from senet.errors import SenetError
from senet.models.cifar import CifarResNet
from senet.models.se import SEConfig

LR, MOMENTUM, WD = 0.05, 0.9, 5e-4
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA graphs need a CUDA GPU; none here")


def _tiny(seed=0, device="cpu"):
    torch.manual_seed(seed)
    model = CifarResNet("basic", 1, widths=(8, 16, 32), se=SEConfig(reduction=4),
                        stem_channels=8)
    return model.to(device, memory_format=torch.channels_last)


def _batches(steps, n=8, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x = torch.randn(n, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, 10, (n,), generator=gen).to(device)
        out.append((x.contiguous(memory_format=torch.channels_last), y))
    return out


def _sgd(model, device="cpu", graphs=False):
    return make_optimizer(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD,
                          nesterov=False, device=device, graphs=graphs)


def _reference_epoch(model, batches, lrs):
    """The loop as train.py wrote it: one host read per step."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    loss_sum, wrong, seen = 0.0, 0, 0
    for (x, y), lr in zip(batches, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        wrong += int((logits.argmax(1) != y).sum().item())
        seen += len(y)
    return {"train_loss": loss_sum / seen, "train_top1_err": 100.0 * wrong / seen}


def test_device_sums_equal_a_per_step_host_read_exactly():
    batches = _batches(6)
    lrs = [0.05, 0.05, 0.04, 0.03, 0.02, 0.01]
    expected = _reference_epoch(_tiny(), batches, lrs)
    model = _tiny()
    step = make_train_step(model, _sgd(model))
    step.begin_epoch()
    for (x, y), lr in zip(batches, lrs, strict=True):
        step(x, y, lr)
    (got,) = step.end_epoch()
    assert got["train_loss"] == expected["train_loss"]
    assert got["train_top1_err"] == expected["train_top1_err"]
    assert got["images"] == 48
    # A second epoch starts from zero.
    step.begin_epoch()
    step(*batches[0], 0.01)
    assert step.end_epoch()[0]["images"] == 8


def test_tensor_lr_fused_optimizer_follows_the_schedule_like_plain_sgd():
    # The graph path's optimizer (fused SGD, lr a tensor written per step), run eagerly.
    batches = _batches(4)
    lrs = [0.1, 0.05, 0.02, 0.01]
    plain, fused = _tiny(), _tiny()
    step_plain = make_train_step(plain, _sgd(plain))
    step_fused = make_train_step(fused, _sgd(fused, graphs=True))
    assert isinstance(step_fused.optimizer.param_groups[0]["lr"], torch.Tensor)
    for (x, y), lr in zip(batches, lrs, strict=True):
        step_plain(x, y, lr)
        step_fused(x, y, lr)
    assert float(step_fused.optimizer.param_groups[0]["lr"]) == pytest.approx(0.01)
    for (name, a), b in zip(plain.state_dict().items(), fused.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    torch.testing.assert_close(step_plain.end_epoch()[0]["train_loss"],
                               step_fused.end_epoch()[0]["train_loss"], atol=1e-6, rtol=1e-6)


def test_a_resumed_optimizer_is_made_graph_ready_and_keeps_training_the_same():
    batches = _batches(3)
    a, b = _tiny(), _tiny()
    opt_a, opt_b = _sgd(a), _sgd(b)
    step_a, step_b = make_train_step(a, opt_a), make_train_step(b, opt_b)
    step_a(*batches[0], 0.05)
    step_b(*batches[0], 0.05)
    # As a resume does (lr comes back a float). Deep-copied: load_state_dict would otherwise
    # share opt_a's momentum tensors, as a checkpoint read from disk never does.
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    make_graph_ready(opt_b, "cpu")
    lr = opt_b.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(0.05)
    assert opt_b.param_groups[0]["fused"] is True
    for x, y in batches[1:]:
        step_a(x, y, 0.02)
        step_b(x, y, 0.02)
    assert float(opt_b.param_groups[0]["lr"]) == pytest.approx(0.02)
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, atol=1e-6, rtol=1e-5)
    with pytest.raises(SenetError, match="support the SGD optimizer, not Adam"):
        make_graph_ready(torch.optim.Adam(a.parameters()), "cpu")


@pytest.mark.parametrize("check_every", [1, 4])
def test_non_finite_check_trips_within_n_steps(check_every):
    model = _tiny()
    step = make_train_step(model, _sgd(model), check_every=check_every)
    step.begin_epoch()
    batches = _batches(12)
    bad_at = 5  # the 5th step (1-based) sees a NaN input
    x_bad = batches[bad_at - 1][0].clone()
    x_bad[0, 0, 0, 0] = float("nan")
    batches[bad_at - 1] = (x_bad, batches[bad_at - 1][1])
    tripped = None
    for i, (x, y) in enumerate(batches, start=1):
        try:
            step(x, y, LR)
        except NonFiniteLoss as exc:
            tripped = i
            assert exc.copies == [0]
            assert "\n" not in str(exc)
            break
    assert tripped is not None
    assert bad_at <= tripped < bad_at + check_every


def test_non_finite_check_names_the_packed_copy_that_failed():
    models = [_tiny(seed) for seed in range(3)]
    packed = pack(models)
    step = make_train_step(packed, _sgd(packed), check_every=2)
    step.begin_epoch()
    per_copy = [_batches(2, seed=s) for s in range(3)]
    per_copy[1][0][0][0, 0, 0, 0] = float("inf")  # only copy 1 sees it
    step(pack_inputs([b[0][0] for b in per_copy]), pack_targets([b[0][1] for b in per_copy]), LR)
    with pytest.raises(NonFiniteLoss, match=r"copies 1\)") as err:
        step(pack_inputs([b[1][0] for b in per_copy]),
             pack_targets([b[1][1] for b in per_copy]), LR)
    assert err.value.copies == [1]


def test_end_of_epoch_check_catches_what_the_periodic_one_skipped():
    model = _tiny()
    step = make_train_step(model, _sgd(model), check_every=1000)
    step.begin_epoch()
    x, y = _batches(1)[0]
    x = x.clone()
    x[0] = float("nan")
    step(x, y, LR)
    with pytest.raises(NonFiniteLoss, match="end of the epoch"):
        step.end_epoch()


def test_packed_step_matches_separate_reference_loops():
    models = [_tiny(seed) for seed in range(2)]
    packed = pack(models)
    data = [_batches(3, seed=10 + s) for s in range(2)]
    lrs = [0.05, 0.04, 0.03]
    step = make_train_step(packed, _sgd(packed))
    step.begin_epoch()
    for i, lr in enumerate(lrs):
        step(pack_inputs([d[i][0] for d in data]), pack_targets([d[i][1] for d in data]), lr)
    got = step.end_epoch()
    for k, model in enumerate(models):
        expected = _reference_epoch(model, data[k], lrs)
        assert got[k]["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-5)
        assert got[k]["train_top1_err"] == expected["train_top1_err"]
        for key, value in model.state_dict().items():
            torch.testing.assert_close(unpack(packed)[k][key], value, atol=1e-4, rtol=1e-4)


def _val_batches(sizes, seed=3, device="cpu"):
    full = _batches(len(sizes), n=max(sizes), seed=seed, device=device)
    return [(x[:n], y[:n]) for (x, y), n in zip(full, sizes, strict=True)]


@pytest.mark.parametrize("static", [8, 16])
def test_padded_evaluation_counts_equal_unpadded(static):
    model = _tiny()
    model.train()
    batches = _val_batches([8, 8, 5])
    plain = make_evaluator(model)(batches)
    padded = make_evaluator(model, batch_size=static)(batches)
    assert model.training  # evaluation puts the mode back
    assert len(plain) == len(padded) == 1
    # Counts are exact. The loss is not bit-exact: a convolution's float32 output for one
    # image can depend on the batch's size, through the kernel the CPU library picks for
    # that shape (seen on one thread: 5e-9 relative).
    assert padded[0]["val_top1_err"] == plain[0]["val_top1_err"]
    assert padded[0]["val_top5_err"] == plain[0]["val_top5_err"]
    assert padded[0]["val_loss"] == pytest.approx(plain[0]["val_loss"], rel=1e-6)
    # And the reference: the per-batch host-read evaluation that train.py does.
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in batches])
        y = torch.cat([y for _, y in batches])
    wrong1 = int((logits.argmax(1) != y).sum())
    assert plain[0]["val_top1_err"] == pytest.approx(100 * wrong1 / 21)
    assert plain[0]["val_loss"] == pytest.approx(
        float(F.cross_entropy(logits, y, reduction="sum")) / 21, rel=1e-6)
    assert 0 < plain[0]["val_top5_err"] <= plain[0]["val_top1_err"]


def test_packed_evaluation_gives_each_copy_its_own_result():
    models = [_tiny(seed) for seed in range(2)]
    packed = pack(models)
    batches = _val_batches([8, 3])
    got = make_evaluator(packed, batch_size=8)(batches)
    for k, model in enumerate(models):
        (expected,) = make_evaluator(model)(batches)
        assert got[k]["val_top1_err"] == expected["val_top1_err"]
        assert got[k]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)


def test_padding_cannot_shrink_a_batch():
    model = _tiny()
    with pytest.raises(ValueError, match="exceeds the static size 4"):
        make_evaluator(model, batch_size=4)(_val_batches([8]))


def test_graph_paths_refuse_a_cpu_model_with_one_line():
    model = _tiny()
    with pytest.raises(SenetError, match="need a CUDA device.*--no-cuda-graphs"):
        make_train_step(model, _sgd(model, graphs=True), graphs=True)
    with pytest.raises(SenetError, match="need a CUDA device"):
        make_evaluator(model, graphs=True, batch_size=8)
    with pytest.raises(SenetError, match="needs batch_size"):
        make_evaluator(model, graphs=True)


def test_check_every_must_be_positive():
    model = _tiny()
    with pytest.raises(SenetError, match="check_every 0"):
        make_train_step(model, _sgd(model), check_every=0)


# --- CUDA only ------------------------------------------------------------------------
# Tolerance: float32 without TF32, cuDNN deterministic. The graph path replays the same
# kernels, but its optimizer is fused SGD with a tensor lr where eager uses foreach SGD:
# rounding differs at the last bit and grows over the steps; 20 steps stay within 1e-3 of
# the loss (absolute, losses are ~2.3) and 1e-3 of each weight.
GRAPH_LOSS_ATOL = 1e-3


def _cuda_losses(model, steps, batches, lrs):
    losses = []
    for (x, y), lr in zip(batches, lrs, strict=True):
        steps(x, y, lr)
        losses.append(steps.last_loss.clone())
    return torch.stack(losses).cpu()


@pytest.fixture
def exact_cuda():
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = flags


@needs_cuda
def test_cuda_graph_step_matches_eager_over_20_steps(exact_cuda):
    batches = _batches(20, n=32, device="cuda")
    lrs = [LR * (1 - i / 20) for i in range(20)]
    eager_model, graph_model = _tiny(device="cuda"), _tiny(device="cuda")
    eager = make_train_step(eager_model, _sgd(eager_model, "cuda"))
    graphed = make_train_step(graph_model, _sgd(graph_model, "cuda", graphs=True), graphs=True)
    assert graphed.path == "cuda-graphs"
    a = _cuda_losses(eager_model, eager, batches, lrs)
    b = _cuda_losses(graph_model, graphed, batches, lrs)
    assert graphed.graph is not None  # it really captured and replayed
    torch.testing.assert_close(b, a, atol=GRAPH_LOSS_ATOL, rtol=0)
    for x, y in zip(eager_model.state_dict().values(), graph_model.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(y, x, atol=1e-3, rtol=1e-3)
    ea, gb = eager.end_epoch()[0], graphed.end_epoch()[0]
    assert gb["train_loss"] == pytest.approx(ea["train_loss"], abs=GRAPH_LOSS_ATOL)
    # Evaluation: graphed (padded, static size) against eager.
    val = _val_batches([32, 32, 7], device="cuda")
    e = make_evaluator(eager_model)(val)[0]
    g = make_evaluator(eager_model, graphs=True, batch_size=32)(val)[0]
    assert g["val_top1_err"] == e["val_top1_err"]
    assert g["val_loss"] == pytest.approx(e["val_loss"], rel=1e-5)


@needs_cuda
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_packed_step_matches_separate_eager_runs(exact_cuda, graphs):
    k = 3
    models = [_tiny(seed, device="cuda") for seed in range(k)]
    packed = pack(models)
    data = [_batches(20, n=32, seed=20 + s, device="cuda") for s in range(k)]
    lrs = [LR] * 20
    step = make_train_step(packed, _sgd(packed, "cuda", graphs=graphs), graphs=graphs)
    packed_batches = [(pack_inputs([d[i][0] for d in data]), pack_targets([d[i][1] for d in data]))
                      for i in range(20)]
    got = _cuda_losses(packed, step, packed_batches, lrs)  # (20, K)
    for j, model in enumerate(models):
        single = make_train_step(model, _sgd(model, "cuda"))
        ref = _cuda_losses(model, single, data[j], lrs)[:, 0]
        torch.testing.assert_close(got[:, j], ref, atol=GRAPH_LOSS_ATOL, rtol=0)
