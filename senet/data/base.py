"""What every dataset offers the training engine, plus the seeding and hashing they share."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


@runtime_checkable
class Data(Protocol):
    """A loaded dataset, ready to hand out batches on the training device."""

    name: str
    num_classes: int
    class_names: list[str]
    image_size: int
    train_len: int
    val_len: int
    source: str
    digest: str

    def steps_per_epoch(self) -> int: ...

    def train_batches(self, epoch: int) -> Iterator[Batch]: ...

    def val_batches(self) -> Iterator[Batch]: ...


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed from several parts, stable across runs, machines and Python versions.

    Python's hash() is salted per process, so a cryptographic hash is used instead.
    """
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that drives shuffling and augmentation of one epoch.

    Seeding from (seed, epoch) alone is what lets a run resumed at epoch e replay exactly the
    batches an uninterrupted run would have seen.
    """
    gen = torch.Generator(device="cpu")
    gen.manual_seed(mix_seed("senet-epoch", seed, epoch))
    return gen


def short_digest(*parts: bytes | str) -> str:
    """A short stable hex digest of the given parts (for MLflow dataset logging)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def tensor_digest(*tensors: Tensor) -> str:
    """Digest of tensors' contents; layout-independent (hashes the logical NCHW order)."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


@contextlib.contextmanager
def small_ops_threads(device: torch.device) -> Iterator[None]:
    """Run batch assembly on CPU with one intra-op thread, restoring the setting after.

    Assembling a batch is a handful of ops on a few hundred KB each. Splitting them over the
    intra-op pool gains little, and when the cores are busy (the model, other jobs) waking
    the pool costs far more than the work: measured 55k vs 2-6k img/s on a loaded 2-core
    machine. Switching the thread count costs microseconds. GPU work is unaffected.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
