"""Publishing a request corpus, a dataset or a trained checkpoint: a card with Hub front matter, then an upload.

:func:`publish` picks the files of a folder that make up the artefact, writes its card (``README.md``) and hands
both to :func:`push_folder`. The target is a Hugging Face repo id, or a local folder: a ``file://`` URL, a path
starting with ``/`` or ``./``, or any repo id when ``INSTRUCTIR_HUB_DIR`` is set (the repo becomes a subfolder of
it), which lets the whole path be tried offline. Local targets are written under a temporary name and renamed.

Cards reuse what the folder already has: the corpus and dataset builders write a README that says how the data was
made; front matter is merged into it (keys already there win) and a "Load it" section is added. A checkpoint's card
is written from its training config, the checkpoint itself and the training log.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from instructir.io import replace_folder

# The kinds of artefact and the Hub repo type each goes to.
REPO_TYPES = {"corpus": "dataset", "dataset": "dataset", "checkpoint": "model"}
# The files of each kind that are uploaded; None means every file of the folder (hidden ones aside).
FILES: dict[str, tuple[str, ...] | None] = {
    "corpus": ("corpus.parquet", "summary.json"),
    "dataset": None,
    "checkpoint": ("final.safetensors", "config.json", "log.csv"),
}
HUB_DIR_ENV = "INSTRUCTIR_HUB_DIR"


class PushError(RuntimeError):
    """An upload that could not be done; the message says what to check."""


def local_target(repo: str) -> Path | None:
    """The folder ``repo`` names when the target is local (see the module docs), or None for a Hub repo id."""
    if repo.startswith("file://"):
        return Path(repo[len("file://") :])
    if repo.startswith(("/", "./")):
        return Path(repo)
    if os.environ.get(HUB_DIR_ENV):
        return Path(os.environ[HUB_DIR_ENV]) / repo
    return None


def push_folder(
    local_folder: str | Path,
    repo: str,
    kind: str,
    card_text: str,
    token: str | None = None,
    include: Sequence[str] | None = None,
) -> str:
    """Upload the files of ``local_folder`` (those matching ``include`` globs, if given) with ``card_text`` as
    README.md to ``repo``; returns where they went (a folder or the repo's URL).

    A local target is replaced as a whole, atomically. A Hub repo is created if needed (``kind`` decides whether
    it is a dataset or a model repo) and gets every file in one commit.
    """
    if kind not in REPO_TYPES:
        raise ValueError(f"kind must be one of {', '.join(REPO_TYPES)}, got {kind!r}")
    folder = Path(local_folder)
    files = _select(folder, include)
    if not files:
        raise PushError(f"{folder}: no files to push (looked for {', '.join(include or ['anything'])})")
    target = local_target(repo)
    if target is not None:
        _copy_atomically(folder, files, card_text, target)
        return str(target)
    return _upload(folder, files, card_text, repo, REPO_TYPES[kind], token)


def publish(folder: str | Path, repo: str, kind: str, token: str | None = None) -> str:
    """Write the card of the ``kind`` artefact in ``folder`` and push it with its files to ``repo``."""
    cards = {"corpus": corpus_card, "dataset": dataset_card, "checkpoint": model_card}
    if kind not in cards:
        raise ValueError(f"kind must be one of {', '.join(cards)}, got {kind!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return push_folder(folder, repo, kind, cards[kind](folder, repo), token=token, include=FILES[kind])


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The YAML front matter of a card (empty if none) and the text after it."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return yaml.safe_load(text[4:end]) or {}, text[end + len("\n---\n") :].lstrip("\n")
    return {}, text


def with_front_matter(text: str, meta: dict[str, Any]) -> str:
    """``text`` with ``meta`` merged into its front matter; keys the card already has keep their values."""
    existing, body = split_front_matter(text)
    merged = {**meta, **existing}
    return "---\n" + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def size_category(count: int) -> str:
    """The Hub's size bucket for ``count`` rows, e.g. ``10K<n<100K``."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((label for limit, label in bounds if count < limit), "1M<n<10M")


def corpus_card(folder: str | Path, repo: str) -> str:
    """The card of a request corpus folder (corpus.parquet, summary.json and usually README.md)."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not (folder / "corpus.parquet").is_file():
        raise FileNotFoundError(f"{folder}: no corpus.parquet; give a folder written by `instructir prompts filter`")
    tasks = Counter(pq.read_table(folder / "corpus.parquet", columns=["task"]).column("task").to_pylist())
    rows = sum(tasks.values())
    text = _read(folder / "README.md") or "\n".join(
        [
            f"# {folder.name}",
            "",
            f"{rows:,} English photo-restoration requests labelled with one of {len(tasks)} tasks, made with "
            "`instructir prompts generate` and `instructir prompts filter` (see summary.json for the filter funnel).",
            "",
            "| task | rows |",
            "|---|---|",
            *[f"| {task} | {count} |" for task, count in sorted(tasks.items())],
            "",
        ]
    )
    meta = {
        "license": "mit",
        "language": ["en"],
        "task_categories": ["text-classification"],
        "size_categories": [size_category(rows)],
        "tags": ["instructir", "image-restoration", "instructions"],
        "pretty_name": folder.name,
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "corpus.parquet"}]}],
    }
    usage = [
        "```python",
        "from datasets import load_dataset",
        "",
        f'requests = load_dataset("{repo}", split="train")  # columns: id, text, task, source, ...',
        "```",
        "",
        "or, with instructir installed, after downloading `corpus.parquet`:",
        "",
        "```python",
        "from instructir.prompts.corpus import load_corpus",
        "",
        'table = load_corpus("corpus.parquet")',
        "```",
    ]
    return with_front_matter(_add_usage(text, usage), meta)


def dataset_card(folder: str | Path, repo: str) -> str:
    """The card of a dataset folder written by `instructir data build` (arrow or parquet format)."""
    folder = Path(folder)
    summary = _read_json(folder / "summary.json")
    if summary is None:
        raise FileNotFoundError(f"{folder}: no summary.json; give a folder written by `instructir data build`")
    arrow = (folder / "dataset_dict.json").is_file()
    splits = [split for split, count in summary["by_split"].items() if count]
    pattern = "{split}/*.arrow" if arrow else "data/{split}-*.parquet"
    data_files = [{"split": split, "path": pattern.format(split=split)} for split in splits]
    meta = {
        "license": "other",
        "task_categories": ["image-to-image"],
        "tags": ["instructir", "image-restoration", "instruction-guided"],
        "size_categories": [size_category(summary["samples"])],
        "configs": [{"config_name": "default", "data_files": data_files}],
    }
    text = _read(folder / "README.md") or f"# {folder.name}\n\n{summary['samples']} samples made with instructir.\n"
    usage = [
        "```python",
        "from datasets import load_dataset",
        "",
        f'splits = load_dataset("{repo}")  # train / validation / test',
        'row = splits["train"][0]  # instruction, task, degraded and clean (PIL images), params, source',
        "```",
    ]
    if arrow:
        usage += [
            "",
            "The files are `save_to_disk` output, so a downloaded copy also loads with",
            "`datasets.load_from_disk(huggingface_hub.snapshot_download(REPO, repo_type='dataset'))`.",
        ]
    usage += ["", "Licence: the clean photos keep the licences of their sources (listed in summary.json)."]
    return with_front_matter(_add_usage(text, usage), meta)


def model_card(folder: str | Path, repo: str, datasets: Sequence[str] = ()) -> str:
    """The card of a training run folder: final.safetensors, config.json (training config) and log.csv.

    ``datasets`` are Hub ids of the training data, listed in the front matter when known.
    """
    from instructir.model.checkpoint import load_checkpoint

    folder = Path(folder)
    checkpoint = folder / "final.safetensors"
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{folder}: no final.safetensors; give the --out folder of a finished `instructir train`"
        )
    model, head, saved = load_checkpoint(checkpoint)
    config = _read_json(folder / "config.json") or saved.get("config") or {}
    parameters = sum(p.numel() for part in (model, head) if part is not None for p in part.parameters())
    last = _last_log_row(folder / "log.csv")
    data = _read_json(Path(config["data"]) / "summary.json") if config.get("data") else None
    meta: dict[str, Any] = {
        "library_name": "instructir",
        "pipeline_tag": "image-to-image",
        "license": "mit",
        "tags": ["instructir", "image-restoration", "image-to-image", "instruction-guided"],
    }
    if datasets:
        meta["datasets"] = list(datasets)
    architecture = model.config if model is not None else {}
    lines = [
        f"# {repo.rstrip('/').split('/')[-1]}",
        "",
        "An InstructIR model (image restoration guided by a plain-language request) trained with the instructir "
        f"toolkit: {parameters:,} parameters, width {architecture.get('width')}, encoder blocks "
        f"{architecture.get('enc_blks')}, middle blocks {architecture.get('middle_blk_num')}, decoder blocks "
        f"{architecture.get('dec_blks')}. A text head reads the request's sentence embedding "
        f"(`{config.get('encoder', 'all-MiniLM-L6-v2')}`) and also predicts its intent.",
        "",
        "## Training",
        "",
        f"{config.get('steps')} steps, batch {config.get('batch')}, {config.get('patch')} px crops, peak learning "
        f"rate {config.get('lr')}, seed {config.get('seed')}; loss L1 + {config.get('text_weight')} x intent "
        "cross-entropy; the weights are the EMA of the run.",
    ]
    if last:
        lines += [
            "",
            f"Last logged step {last['step']}: L1 {float(last['l1']):.4f}, cross-entropy {float(last['ce']):.4f}.",
        ]
    if data:
        by_task = ", ".join(f"{task} {count}" for task, count in data["by_task"].get("train", {}).items())
        lines += ["", f"Data: {data['by_split'].get('train', 0)} training samples ({by_task})."]
    lines += [
        "",
        "Files: `final.safetensors` (image model + text head, with their architectures and the training config in "
        "its metadata), `config.json` (the training config), `log.csv` (the training log).",
        "",
        "## Use it",
        "",
        "```bash",
        "pip install instructir",
        f"hf download {repo} final.safetensors --local-dir model",
        'instructir restore photo.jpg "remove the noise" --checkpoint model/final.safetensors --out restored.png',
        "```",
        "",
        "```python",
        "from huggingface_hub import hf_hub_download",
        "from instructir.datasets.images import load_image",
        "from instructir.model.restore import Restorer",
        "",
        f'restorer = Restorer.from_checkpoint(hf_hub_download("{repo}", "final.safetensors"))',
        'restored = restorer.restore(load_image("photo.jpg"), "remove the noise")  # float32 HxWx3 in [0, 1]',
        "```",
        "",
    ]
    return with_front_matter("\n".join(lines), meta)


def _add_usage(text: str, usage: list[str]) -> str:
    """The card with a "Load it" section appended, unless it already has one."""
    if "## Load it" in text:
        return text
    return text.rstrip("\n") + "\n\n## Load it\n\n" + "\n".join(usage) + "\n"


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _last_log_row(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[-1] if rows else None


def _select(folder: Path, include: Sequence[str] | None) -> list[str]:
    """Relative paths of the files to push: not hidden, not README.md, matching ``include`` when given."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or relative == "README.md" or any(part.startswith(".") for part in relative.split("/")):
            continue
        if include is None or any(fnmatch.fnmatch(relative, pattern) for pattern in include):
            found.append(relative)
    return found


def _copy_atomically(folder: Path, files: list[str], card_text: str, target: Path) -> None:
    """Copy the files and the card into a temporary sibling of ``target``, then put it in ``target``'s place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.push-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for relative in files:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, staging / relative)
    (staging / "README.md").write_text(card_text, encoding="utf-8")
    replace_folder(staging, target)


def _upload(folder: Path, files: list[str], card_text: str, repo: str, repo_type: str, token: str | None) -> str:
    """Create the Hub repo if needed and upload everything in one commit; returns the repo's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    operations = [CommitOperationAdd(relative, folder / relative) for relative in files]
    operations.append(CommitOperationAdd("README.md", card_text.encode("utf-8")))
    try:
        url = api.create_repo(repo, repo_type=repo_type, exist_ok=True)
        api.create_commit(repo, operations, commit_message="Upload with instructir", repo_type=repo_type)
    except (OSError, ValueError) as error:
        raise PushError(
            f"pushing to the Hub repo {repo} failed: {error}; check the repo id, your network and your token "
            "(HF_TOKEN or `hf auth login`)"
        ) from error
    return str(url)
