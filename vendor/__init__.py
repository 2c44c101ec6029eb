"""Project-written, training-capable Transformer in Meta MTP state-dict layout."""
