"""Under torchrun every rank evaluates its slice of each validation batch and the counts
are summed over ranks: two gloo processes must report exactly what one process does."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
import warm_procs

from senet.engine.step import make_evaluator
from senet.engine.train import evaluate_sharded
from senet.models import build


class _Data:
    name = "tiny"

    def val_batches(self):
        gen = torch.Generator().manual_seed(1)
        for size in (7, 7, 3):  # odd sizes: the ranks' slices differ in length
            yield torch.randn(size, 3, 32, 32, generator=gen), torch.randint(0, 10, (size,),
                                                                              generator=gen)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("se_resnet20", num_classes=10).eval()


def _rank(rank: int, world: int, folder: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous",
                                         rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        torch.save(evaluate_sharded(make_evaluator(_model()), _Data(), world, rank),
                   f"{folder}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_report_what_one_process_does(tmp_path):
    (alone,) = make_evaluator(_model())(_Data().val_batches())
    warm_procs.start()  # two real processes, forked from the session's warm interpreter
    mp.start_processes(_rank, args=(2, str(tmp_path)), nprocs=2, start_method="forkserver")
    results = {rank: torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)}
    for rank in (0, 1):
        for key in ("val_top1_err", "val_top5_err"):
            assert results[rank][key] == alone[key], (rank, key)
        assert abs(results[rank]["val_loss"] - alone["val_loss"]) < 1e-4
