"""Meta-layout MTP LLaMA: ModelArgs, Transformer (training-capable), Tokenizer; KV-cache inference in generation.py."""

from vendor.meta_llama.model import ModelArgs, Transformer
from vendor.meta_llama.tokenizer import Tokenizer

__all__ = ["ModelArgs", "Transformer", "Tokenizer"]
