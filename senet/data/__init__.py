"""The data pipeline: `load_data(name, ...)` returns a `Data` that yields device batches.

Small datasets (builtin, CIFAR, small-image folders) live on the device as uint8 tensors
with batched augmentation; ImageNet-style trees stream through DataLoader workers.
"""

from senet.data.base import Data
from senet.data.load import DATASETS_HELP, VALID_NAMES, load_data

__all__ = ["DATASETS_HELP", "VALID_NAMES", "Data", "load_data"]
