"""The request corpora: the one shipped inside the package, loading by short name or path, and dataset cards.

The shipped corpus lives in ``instructir/data/<name>/`` as ``corpus.parquet`` with its card (``README.md``) and
filter funnel (``summary.json``), so an installed package loads it offline with one call.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from instructir.tasks import all_tasks

SHIPPED_CORPUS = "instructir-requests"


def shipped_corpora() -> list[str]:
    """Short names of the corpora that ship with the package."""
    root = resources.files("instructir") / "data"
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if (entry / "corpus.parquet").is_file())


def resolve_corpus(name_or_path: str | Path = SHIPPED_CORPUS) -> Path:
    """The Parquet or JSONL file for a shipped corpus's short name, or the path itself."""
    packaged = resources.files("instructir") / "data" / str(name_or_path) / "corpus.parquet"
    if packaged.is_file():
        return Path(str(packaged))
    path = Path(name_or_path)
    if path.is_dir() and (path / "corpus.parquet").is_file():
        return path / "corpus.parquet"
    if path.is_file():
        return path
    names = ", ".join(shipped_corpora()) or "none installed"
    raise FileNotFoundError(f"no corpus named or found at {name_or_path!r}; shipped corpora: {names}")


def load_corpus(name_or_path: str | Path = SHIPPED_CORPUS) -> pa.Table:
    """A corpus as an Arrow table (``.to_pylist()`` or ``.to_pandas()`` for other forms)."""
    from instructir.prompts.candidates import read_candidates

    path = resolve_corpus(name_or_path)
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return pa.Table.from_pylist(read_candidates(path))


def samples_by_task(rows: list[dict[str, Any]], per_task: int, seed: int = 0) -> dict[str, list[str]]:
    """Up to ``per_task`` random texts of each task, reproducibly."""
    rng = random.Random(seed)
    found: dict[str, list[str]] = {}
    for task in all_tasks():
        texts = [row["text"] for row in rows if row["task"] == task.name]
        if texts:
            found[task.name] = rng.sample(texts, min(per_task, len(texts)))
    return found


_LICENCES = {
    "SmolLM2": "SmolLM2-135M-Instruct is Apache-2.0",
    "gemma-3": "Gemma 3 270M is under the Gemma Terms of Use, which claim no rights in the text it generates",
}


def generator_licences(models: set[str]) -> str:
    """One sentence naming the licence of each generating model the runs used."""
    known = [text for key, text in _LICENCES.items() if any(key.lower() in model.lower() for model in models)]
    return ("Generating models: " + "; ".join(known) + ".") if known else ""


def write_card(
    rows: list[dict[str, Any]],
    funnel: dict[str, Any],
    generation: list[dict[str, Any]],
    path: str | Path,
    title: str,
    command: str,
    measured: list[str] | None = None,
) -> Path:
    """A dataset card (README.md): how the corpus was made, its funnel, counts, what was measured of it
    (``measured``: Markdown lines), samples and licence."""
    counts = Counter(row["task"] for row in rows)
    sources = Counter(row.get("source") or "llm" for row in rows)
    lines = [
        f"# {title}",
        "",
        f"{len(rows):,} English photo-restoration requests labelled with one of {len(counts)} tasks, for training and "
        "analysing instruction-guided image restoration (InstructIR and successors).",
        "",
        "## How it was made",
        "",
        "Candidates were generated with `instructir prompts generate` and filtered with `instructir prompts filter`:",
        "",
        "```bash",
        command,
        "```",
        "",
        "| generation run | backend | model | seed | calls | candidates | generated tokens | settings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in generation:
        config = run["config"]
        settings = (
            f"style {config['style']}, T {config['temperature']}, top-p {config['top_p']}, "
            f"max tokens {config.get('reply_tokens') or config['max_tokens']}, {config['seeds_per_prompt']} examples + "
            f"{config['generated_per_prompt']} accepted request(s) per prompt"
            + (f", mode {config['mode']}" if config.get("mode", "plain") != "plain" else "")
            + (f", grounded on {config['examples']} hand-written examples" if config.get("examples") else "")
            + (", filtered every round" if run.get("inline_filter") else "")
        )
        lines.append(
            f"| {run.get('name', '')} | {run['backend']} | {run['model']} | {config['seed']} | {run['calls']} | "
            f"{run['candidates']} | {run.get('new_completion_tokens', '')} | {settings} |"
        )
    lines += ["", "## Filter funnel", "", "| stage | in | out | dropped by reason |", "|---|---|---|---|"]
    for step in funnel["stages"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(step["dropped_by_reason"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {step['stage']} | {step['in']} | {step['out']} | {reasons or '-'} |")
    lines += ["", "## Counts", "", "| task | rows |", "|---|---|"]
    lines += [f"| {task.name} | {counts.get(task.name, 0)} |" for task in all_tasks()]
    lines += ["", "Sources: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items())), ""]
    lines += [
        "Columns: `id`, `text`, `task` (registry name; ids in `instructir.tasks`), `source` (`seed`: written by the "
        "instructir developers; `llm`: generated), `quality` (the learned quality stage's probability that the row "
        "is a coherent request for its task), and for generated rows the generation record (`run`, backend, model, "
        "fingerprint of the call, seed, sampling settings, tokens, `mode`, `attributes`) and `fate` (what the "
        "run's own inline filter had done with the row).",
        "",
        "## Samples (20 random rows per task)",
        "",
    ]
    for task, texts in samples_by_task(rows, 20).items():
        lines += [f"### {task}", ""] + [f"- {json.dumps(text, ensure_ascii=False)[1:-1]}" for text in texts] + [""]
    lines += measured or []
    lines += [
        "## Limitations",
        "",
        "Generated by small models (135M and 270M parameters) and filtered automatically: some rows are clumsy or "
        "mislabelled despite the filter (the measured share is above). Use the `source` column to keep only the "
        "hand-written seeds, or the `quality` column to keep only the rows the learned quality stage is surest of.",
        "",
        "## Licence",
        "",
        "MIT, like the instructir package. " + generator_licences({run["model"] for run in generation}),
        "",
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
