"""instructir: instruction-guided image restoration, from prompt corpora to a trained InstructIR model."""

__version__ = "0.1.0"
