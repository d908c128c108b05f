"""Shared fixtures: a loopback Chat Completions server, a way to run the real CLI in a subprocess, and a way to
import the repository's scripts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from chat_server import ChatServer

from instructir.datasets.sources import sample_images
from instructir.model import InstructIR, TextHead, save_checkpoint
from instructir.tasks import all_tasks

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"width": 8, "enc_blks": (1, 1), "middle_blk_num": 1, "dec_blks": (1, 1)}


def load_script(path: str) -> ModuleType:
    """Import a script of the repository (``models/default/card.py``...): its folder is not a package."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_checkpoint(path: Path, model: InstructIR | None = None) -> Path:
    """Save ``model`` (default: a seeded random InstructIR of ``TINY_MODEL`` size) with a head for every task."""
    if model is None:
        torch.manual_seed(0)
        model = InstructIR(**TINY_MODEL)
    return save_checkpoint(path, model, TextHead(num_classes=len(all_tasks())))


def tiny_model(seed: int = 0) -> InstructIR:
    """A small InstructIR with random NAFBlock and ICB beta/gamma, so no block is the identity."""
    torch.manual_seed(seed)
    model = InstructIR(**TINY_MODEL)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    return model.eval()


def photo(height: int, width: int) -> np.ndarray:
    """A crop of a real photo (smooth regions and edges, unlike noise)."""
    image = next(ref for ref in sample_images() if ref.name.endswith("astronaut")).load()
    return np.ascontiguousarray(image[100 : 100 + height, 150 : 150 + width])


@pytest.fixture
def server():
    """A fault-free loopback server; tests that need faults build their own ChatServer."""
    with ChatServer() as running:
        yield running


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for CLI subprocesses: wide output, no colour, no real API key."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 300, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """Run `instructir ARGS` as a real process in ``cwd`` (default: the repository) and capture what it prints."""
    command = [sys.executable, "-m", "instructir", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=cli_env(**env), cwd=cwd)
