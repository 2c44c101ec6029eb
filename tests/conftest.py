"""Suite-wide settings: deterministic, single-threaded torch so parallel CI cores are not oversubscribed."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

torch.set_num_threads(1)
