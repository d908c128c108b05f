"""Restoration requests: LLM backends, generation, parsing and the rules a candidate must pass."""
