"""Repository-relative locations shared by every package (the one place that knows them)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STORAGE = Path(os.environ.get("WMTP_STORAGE", REPO_ROOT / "storage"))
DATASETS_ROOT = STORAGE / "datasets"
MODELS_ROOT = STORAGE / "models"
TOKENIZERS_ROOT = STORAGE / "tokenizers"
RUNS_ROOT = STORAGE / "runs"

# The project's own deterministic 8000-piece code tokenizer (`wmtp train-tokenizer`), used by the micro model.
CODE_TOKENIZER = TOKENIZERS_ROOT / "wmtp-code-8k.model"
# A real 32000-piece LLaMA-style tokenizer (Mistral v0.1, Apache-2.0): stands in for a "real base tokenizer".
MISTRAL_TOKENIZER = TOKENIZERS_ROOT / "mistral-v1-32000.model"

BASE_MODEL_DIR = MODELS_ROOT / "meta-llama-mtp"
MICRO_MODEL_DIR = MODELS_ROOT / "micro-mtp"
REFERENCE_MODEL_DIR = MODELS_ROOT / "ref-sheared-llama-2.7b"
MICRO_REFERENCE_DIR = MODELS_ROOT / "micro-ref-mtp"  # the micro-world Rho-1 reference (`wmtp build-micro --reference`)
REWARD_MODEL_DIR = MODELS_ROOT / "starling-rm-7b"
