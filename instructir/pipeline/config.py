"""The run config: pydantic models (unknown or bad keys are errors that name the key), profiles and YAML I/O.

Two profiles ship: ``quick`` (the README's main job: offline, embedded models, bundled photos, 2 CPU cores,
under 30 minutes) and ``paper`` (the paper's 5-task recipe on the real paired sets, for GPUs, trained through
``accelerate launch``). A YAML file overrides any subset of a profile's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from instructir.tasks import resolve_tasks


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_tasks(names: list[str]) -> list[str]:
    resolve_tasks(names or None)
    return names


class GenerateSettings(_Section):
    """Request generation with an LLM (see `instructir prompts generate`)."""

    backend: Literal["local", "openai"] = "local"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    tasks: list[str] = Field(default_factory=list)
    per_task: int = Field(20, ge=1)
    concurrency: int = Field(16, ge=1)
    threads: int | None = Field(None, ge=1)
    temperature: float = Field(0.9, ge=0, le=2)

    _tasks = field_validator("tasks")(_known_tasks)


class JudgeSettings(_Section):
    """An LLM judge as the filter's last stage (see `instructir prompts filter --judge-model`)."""

    model: str
    backend: Literal["local", "openai"] | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(16, ge=1)


class FilterSettings(_Section):
    """The filtering cascade (see `instructir prompts filter`)."""

    embeddings: bool = True
    near_threshold: float = Field(0.7, gt=0, le=1)
    semantic_threshold: float = Field(0.85, gt=0, le=1)
    label_margin: float = Field(0.3, ge=0, le=1)
    topic_threshold: float = Field(0.4, ge=-1, le=1)
    learned_quality: bool = True
    quality_lm: bool = True
    quality_threshold: float | None = Field(None, ge=0, le=1)
    judge: JudgeSettings | None = None


class DatasetSettings(_Section):
    """Which requests and photos make the (instruction, degraded, clean) dataset."""

    corpus: str = "generated"
    images: str = "samples"
    paired: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    per_image: int = Field(4, ge=1)
    patch: int = Field(128, ge=0)
    mixtures: float = Field(0.0, ge=0, le=1)
    num_proc: int = Field(1, ge=1)

    _tasks = field_validator("tasks")(_known_tasks)

    @field_validator("patch")
    @classmethod
    def _patch(cls, value: int) -> int:
        if value and (value < 32 or value % 16):
            raise ValueError("patch must be 0 (whole images) or a multiple of 16 >= 32")
        return value


class TrainSettings(_Section):
    """Model size and optimisation (see `instructir train`)."""

    steps: int = Field(1000, ge=1)
    batch: int = Field(8, ge=1)
    patch: int = Field(128, ge=16, multiple_of=16)
    lr: float = Field(5e-4, gt=0)
    warmup: int = Field(50, ge=0)
    text_weight: float = Field(0.1, ge=0)
    checkpoint_every: int = Field(500, ge=1)
    width: int = Field(32, ge=4)
    enc_blks: list[int] = Field(default_factory=lambda: [2, 2, 4, 8])
    middle_blks: int = Field(4, ge=0)
    dec_blks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2])
    on_the_fly: bool = False
    augment: bool = False
    init: str | None = None
    workers: int = Field(0, ge=0)
    compile: bool = False
    launcher: Literal["none", "accelerate"] = "none"
    num_processes: int = Field(1, ge=1)


class EvaluateSettings(_Section):
    """Which split to score and how many samples per task at most."""

    split: str = "test"
    limit: int | None = Field(None, ge=1)
    crop_border: int = Field(0, ge=0)


class AnalyzeSettings(_Section):
    """Which analyses to run on the run's corpus (and real requests, when given)."""

    clusters: bool = True
    diversity: bool = True
    real: str | None = None
    real_description: str = ""
    compare_with: str | None = "instructir-requests"


class RunConfig(_Section):
    """A whole run: where it writes, its seed, and each stage's settings."""

    profile: str = "custom"
    out: str = "runs/quick"
    seed: int = 0
    encoder: str = "all-MiniLM-L6-v2"
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    filter: FilterSettings = Field(default_factory=FilterSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)


PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "profile": "quick",
        "out": "runs/quick",
        "generate": {"backend": "local", "per_task": 20},
        "dataset": {
            "corpus": "instructir-requests",
            "images": "samples",
            "tasks": ["denoise", "deblur", "lowlight"],
            "per_image": 6,
            "patch": 128,
        },
        # Fine-tunes the default model that ships in the package (its size), in the time training the earlier
        # width-16 network from scratch took: 27.72 vs 25.36 dB on the test split (bench/bench_quick_from_default.py).
        "train": {
            "steps": 2200,
            "batch": 4,
            "patch": 64,
            "lr": 3e-4,
            "warmup": 20,
            "width": 24,
            "enc_blks": [1, 1, 2, 2],
            "middle_blks": 2,
            "dec_blks": [1, 1, 1, 1],
            "checkpoint_every": 500,
            "on_the_fly": True,
            "augment": True,
            "init": "shipped",
        },
        "evaluate": {"split": "test"},
        "analyze": {
            "real": "tests/data/real_requests.jsonl",
            "real_description": "real-style requests written for this project",
        },
    },
    "paper": {
        "profile": "paper",
        "out": "runs/paper",
        "generate": {"backend": "openai", "model": "gpt-4o-mini", "per_task": 2000, "concurrency": 64},
        "dataset": {
            "corpus": "generated",
            "images": "data/clean",
            "paired": ["lol:data/LOL", "gopro:data/GoPro", "sots:data/SOTS-outdoor", "rain100l:data/Rain100L"],
            "tasks": ["denoise", "deblur", "derain", "dehaze", "lowlight"],
            "per_image": 4,
            "patch": 256,
            "num_proc": 8,
        },
        "train": {
            "steps": 300000,
            "batch": 32,
            "patch": 256,
            "lr": 5e-4,
            "warmup": 2000,
            "checkpoint_every": 5000,
            "workers": 8,
            "compile": True,
            "launcher": "accelerate",
            "num_processes": 8,
        },
        "evaluate": {"split": "test"},
        "analyze": {"real": None},
    },
}


def default_checkpoint() -> Path:
    """Where the quick profile (the README's main job) leaves its trained model, relative to the working folder."""
    return Path(PROFILES["quick"]["out"]) / "train" / "model" / "final.safetensors"


def profile_config(name: str) -> RunConfig:
    """The named profile's config (``quick`` or ``paper``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return RunConfig.model_validate(PROFILES[name])


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config; its ``profile`` key (if any) supplies the defaults it overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config; write one with `instructir init {path}`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping of keys to values")
    base = PROFILES.get(str(data.get("profile", "")), {})
    return validate_config(_merge(base, data), str(path))


def validate_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a config mapping; the error lists each bad key by its dotted path."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {_message(item)}" for item in error.errors()
        ]
        raise ValueError(f"{where}: invalid config\n  " + "\n  ".join(problems)) from None


def _message(item: dict[str, Any]) -> str:
    if item["type"] == "extra_forbidden":
        return "unknown key (check its spelling; `instructir init` writes every valid key)"
    return str(item["msg"]).removeprefix("Value error, ")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_COMMENTS = {
    "profile": "quick (CPU, offline, < 30 min) or paper (GPUs, real paired sets); supplies the defaults below",
    "out": "every stage writes a folder here, plus config.resolved.yaml and manifest.json",
    "seed": "one seed for the whole run: same config, same outputs",
    "encoder": "sentence encoder (path or id) for filtering, the text head and the analysis",
    "generate": "LLM request generation (`instructir prompts generate`)",
    "backend": "local: embedded SmolLM2 (offline); openai: any OpenAI-compatible endpoint (set base_url)",
    "per_task": "accepted requests to generate per task",
    "filter": "quality rules, exact/near dedup, learned quality, semantic dedup, label consistency "
    "(`instructir prompts filter`)",
    "learned_quality": "score every row with the learned quality model and drop those below its threshold",
    "quality_lm": "let that model read the embedded LLM's hidden states (more precise; slower)",
    "quality_threshold": "null = the model's own (cross-validated) threshold; 0 = score without dropping",
    "judge": "null, or an LLM judge of each row's task: {model: local} or {model: NAME, base_url: URL}",
    "dataset": "(instruction, degraded, clean) triples (`instructir data build`)",
    "corpus": "'generated' = this run's filtered corpus, or a shipped corpus name / Parquet file",
    "images": "'samples' = photos bundled in installed wheels, or a folder of clean photos",
    "paired": "real paired sets as KIND:DIR (lol, gopro, sots, rain100l, cbsd68, ...)",
    "tasks": "task names from `instructir tasks`; empty = all",
    "train": "InstructIR training (`instructir train`)",
    "init": "null = from scratch; a checkpoint to fine-tune (same size); shipped = the package's default model",
    "launcher": "none, or accelerate (multi-GPU: runs `accelerate launch --num_processes N`)",
    "evaluate": "PSNR/SSIM per task on a split (`instructir eval`)",
    "analyze": "clusters, diversity and synthetic-to-real generalisation reports (`instructir analyze`)",
    "real": "JSONL/CSV of real requests (text, task) for the generalisation figure; null to skip",
    "real_description": "what those requests are, named in the reports (e.g. who wrote them)",
    "compare_with": "a second corpus for the side-by-side diversity report; null to skip",
}


def render_config(config: RunConfig) -> str:
    """The config as YAML with a comment on the keys a user most often changes."""
    lines = []
    for line in yaml.safe_dump(config.model_dump(), sort_keys=False, default_flow_style=False).splitlines():
        key = line.strip().split(":")[0]
        comment = _COMMENTS.get(key)
        lines.append(f"{line}  # {comment}" if comment else line)
    header = "# instructir run config: `instructir run THIS_FILE`. Unknown keys are errors.\n"
    return header + "\n".join(lines) + "\n"
