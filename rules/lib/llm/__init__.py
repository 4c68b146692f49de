"""Language models: what the llm_* steps share (the KV-cache wrapper, metadata, generation)."""
