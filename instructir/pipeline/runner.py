"""Run the stages in order, each in its own folder with a ``stage.json`` that records its input fingerprint.

A stage's fingerprint hashes its settings and the fingerprints of the stages it reads, so a changed setting
re-runs that stage and everything downstream of it, and nothing else. A stage found ``done`` with the same
fingerprint is skipped; one found ``running`` (a killed run) is resumed; one with another fingerprint is wiped
and rerun. ``config.resolved.yaml`` and ``manifest.json`` (versions, timings, outputs) sit beside the stages.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from instructir.io import write_json
from instructir.pipeline.config import RunConfig, render_config
from instructir.pipeline.stages import RESUMES_IN_PLACE, STAGE_FUNCTIONS, Outputs

STAGES = ("generate", "filter", "dataset", "train", "evaluate", "analyze")


def stage_inputs(stage: str, config: RunConfig) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The settings a stage's output depends on, and the earlier stages it reads."""
    dumped = config.model_dump()
    common = {"seed": config.seed}
    if stage == "generate":
        return {**common, **dumped["generate"]}, ()
    if stage == "filter":
        return {**dumped["filter"], "encoder": config.encoder, "tasks": config.generate.tasks}, ("generate",)
    if stage == "dataset":
        reads = ("filter",) if config.dataset.corpus == "generated" else ()
        return {**common, **dumped["dataset"]}, reads
    if stage == "train":
        reads = ("dataset", "filter") if config.dataset.corpus == "generated" else ("dataset",)
        return {**common, **dumped["train"], "encoder": config.encoder}, reads
    if stage == "evaluate":
        return dumped["evaluate"], ("train", "dataset")
    if stage == "analyze":
        reads = ("filter", "dataset", "train") if config.analyze.real else ("filter",)
        return {**common, **dumped["analyze"], "encoder": config.encoder, "corpus": config.dataset.corpus}, reads
    raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def fingerprint(stage: str, config: RunConfig, upstream: dict[str, str]) -> str:
    """sha256 of the stage's settings, the fingerprints it reads and the package version."""
    settings, reads = stage_inputs(stage, config)
    payload = {
        "stage": stage,
        "settings": settings,
        "reads": {name: upstream[name] for name in reads},
        "version": _version("instructir"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_state(folder: Path) -> dict[str, Any] | None:
    """A stage folder's recorded state, or None if it has none (or it is unreadable)."""
    try:
        return json.loads((folder / "stage.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class MissingInputs(FileNotFoundError):
    """The config names input files or folders that do not exist; raised before any stage starts."""


def missing_inputs(config: RunConfig) -> list[str]:
    """The config's input paths that do not exist, as 'key: path' lines (checked before any stage runs)."""
    paths = {"analyze.real": config.analyze.real}
    if config.dataset.images != "samples":
        paths["dataset.images"] = config.dataset.images
    for index, spec in enumerate(config.dataset.paired):
        paths[f"dataset.paired[{index}]"] = spec.partition(":")[2]
    absent = {key: path for key, path in paths.items() if path and not Path(path).exists()}
    return [f"{key}: no such file or folder {path!r}" for key, path in absent.items()]


def run_pipeline(
    config: RunConfig,
    progress: bool = True,
    until: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage (or up to ``until``), skipping finished ones; return the manifest."""
    missing = missing_inputs(config)
    if missing:
        raise MissingInputs("the config names inputs that do not exist:\n  " + "\n  ".join(missing))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if not progress:
        _quiet_library_bars()
    (out / "config.resolved.yaml").write_text(render_config(config), encoding="utf-8")
    manifest: dict[str, Any] = {
        "config": str(out / "config.resolved.yaml"),
        "started": _now(),
        "versions": _versions(),
        "platform": platform.platform(),
        "command": " ".join(["instructir", *sys.argv[1:]]),
        "stages": {},
    }
    fingerprints: dict[str, str] = {}
    outputs: Outputs = {}
    for stage in STAGES[: STAGES.index(until) + 1] if until else STAGES:
        fingerprints[stage] = fingerprint(stage, config, fingerprints)
        record = _run_stage(stage, config, out / stage, fingerprints[stage], outputs, progress, log)
        outputs[stage] = record["outputs"]
        manifest["stages"][stage] = record
        write_json(manifest, out / "manifest.json")
    manifest["finished"] = _now()
    write_json(manifest, out / "manifest.json")
    return manifest


def _run_stage(
    stage: str,
    config: RunConfig,
    folder: Path,
    print_: str,
    outputs: Outputs,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    state = read_state(folder)
    if state and state["fingerprint"] == print_ and state["status"] == "done":
        log(f"{stage}: up to date, skipped ({folder})")
        return {**state, "ran": False}
    resuming = bool(state) and state["fingerprint"] == print_ and stage in RESUMES_IN_PLACE
    if folder.exists() and not resuming:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log(f"{stage}: {'resuming' if resuming else 'running'} -> {folder}")
    started = time.perf_counter()
    state = {"stage": stage, "fingerprint": print_, "status": "running", "started": _now()}
    write_json(state, folder / "stage.json")
    produced = STAGE_FUNCTIONS[stage](config, folder, outputs, progress)
    seconds = round(time.perf_counter() - started, 2)
    state.update(status="done", finished=_now(), seconds=seconds, outputs=produced)
    write_json(state, folder / "stage.json")
    log(f"{stage}: done in {seconds:.1f} s")
    return {**state, "ran": True}


def _quiet_library_bars() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions() -> dict[str, str]:
    packages = ("instructir", "torch", "numpy", "datasets", "transformers", "sentence-transformers", "scikit-learn")
    return {"python": platform.python_version(), **{name: _version(name) for name in packages}}
