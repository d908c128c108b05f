"""The InstructIR model: the image network, the text head and the encoder around it, and checkpoint I/O."""

from instructir.model.checkpoint import load_checkpoint, save_checkpoint
from instructir.model.instructir import InstructIR
from instructir.model.text import TextEncoder, TextHead

__all__ = ["InstructIR", "TextEncoder", "TextHead", "load_checkpoint", "save_checkpoint"]
