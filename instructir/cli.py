"""The `instructir` command line: a thin layer that parses options, calls the library and prints results."""

from __future__ import annotations

import contextlib
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from instructir.tasks import all_tasks, resolve_tasks

app = typer.Typer(help="Instruction-guided image restoration toolkit.", no_args_is_help=True)
prompts_app = typer.Typer(help="Generate and inspect restoration requests.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")
data_app = typer.Typer(help="Build datasets of (instruction, degraded, clean) triples.", no_args_is_help=True)
app.add_typer(data_app, name="data")
analyze_app = typer.Typer(
    help="Analyse corpora, embeddings and models; each command writes a report.", no_args_is_help=True
)
app.add_typer(analyze_app, name="analyze")
console = Console()
errors = Console(stderr=True)


class BackendName(str, Enum):
    local = "local"
    openai = "openai"


def fail(message: str, code: int = 2) -> None:
    """Print a clear error and exit non-zero."""
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.command("tasks")
def tasks_command() -> None:
    """List the registered tasks with their ids and descriptions."""
    table = Table("id", "name", "label", "seeds", "degradations", "description")
    for task in all_tasks():
        table.add_row(
            str(task.id), task.name, task.label, str(len(task.seeds)), ", ".join(task.degradations), task.description
        )
    console.print(table)


class ProfileName(str, Enum):
    quick = "quick"
    paper = "paper"


@app.command("init")
def init_command(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("instructir.yaml"),
    profile: Annotated[ProfileName, typer.Option(help="Defaults to start from.")] = ProfileName.quick,
    overwrite: Annotated[bool, typer.Option(help="Replace PATH if it exists.")] = False,
) -> None:
    """Write a commented run config for `instructir run`."""
    from instructir.pipeline import profile_config, render_config

    if path.exists() and not overwrite:
        fail(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(profile_config(profile.value)), encoding="utf-8")
    console.print(f"config: {path}  (edit it, then: instructir run {path})")


@app.command("run")
def run_command(
    config: Annotated[Path | None, typer.Argument(help="A YAML config from `instructir init`.")] = None,
    profile: Annotated[ProfileName | None, typer.Option(help="Run a profile's defaults without a file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Override the config's output folder.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run generate -> filter -> dataset -> train -> evaluate -> analyze, skipping stages already done."""
    from instructir.pipeline import STAGES, load_config, profile_config, run_pipeline
    from instructir.pipeline.config import validate_config

    if (config is None) == (profile is None):
        fail("give a config file (see `instructir init`) or --profile quick|paper, not both")
    if until is not None and until not in STAGES:
        fail(f"--until must be one of: {', '.join(STAGES)}")
    try:
        settings = load_config(config) if config is not None else profile_config(profile.value)
        if out is not None:
            settings = validate_config({**settings.model_dump(), "out": str(out)})
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
    from instructir.pipeline.runner import MissingInputs

    try:
        manifest = run_pipeline(settings, progress=progress and sys.stderr.isatty(), until=until, log=console.print)
    except MissingInputs as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail(f"interrupted; run the same command to resume from {settings.out}", 130)
    except Exception as error:
        stage = _running_stage(Path(settings.out))
        fail(f"stage {stage} failed: {type(error).__name__}: {error}\nfinished stages are kept; fix and rerun.")
    table = Table("stage", "status", "seconds", "outputs")
    for stage, record in manifest["stages"].items():
        paths = "\n".join(f"{name}: {path}" for name, path in record["outputs"].items())
        table.add_row(stage, "ran" if record["ran"] else "skipped", f"{record['seconds']:.1f}", paths)
    console.print(table)
    console.print(f"manifest: {Path(settings.out) / 'manifest.json'}")


def _running_stage(out: Path) -> str:
    from instructir.pipeline import STAGES
    from instructir.pipeline.runner import read_state

    for stage in STAGES:
        state = read_state(out / stage)
        if state and state["status"] == "running":
            return stage
    return "?"


JudgeModel = Annotated[
    str | None,
    typer.Option(
        help="LLM judge, the filter's last stage: a model name (at --judge-base-url, else the OpenAI API), "
        "or 'local' for the embedded SmolLM2; default: no judge."
    ),
]
JudgeBaseUrl = Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint of the judge.")]
JudgeBackend = Annotated[
    BackendName | None, typer.Option(help="Judge backend; default: local for 'local' or a .gguf file, else openai.")
]
JudgeApiKeyEnv = Annotated[str, typer.Option(help="Environment variable that holds the judge's API key.")]
JudgeConcurrency = Annotated[int, typer.Option(help="Concurrent judge requests (openai).")]
JudgeRpm = Annotated[float | None, typer.Option(help="Judge requests-per-minute limit (openai).")]
LearnedQualityOn = Annotated[
    bool, typer.Option(help="Run the learned quality stage (writes a quality column; with generate: every round).")
]
QualityLm = Annotated[
    bool, typer.Option(help="Let the quality stage read the embedded LLM's hidden states (more precise, slower).")
]
JudgeCache = Annotated[Path | None, typer.Option(help="Judge reply cache (SQLite); default: OUT/judge_cache.sqlite.")]


@prompts_app.command("generate")
def generate_command(
    out: Annotated[Path, typer.Option(help="Output folder for candidates.parquet, rejects.parquet, summary.json.")],
    backend: Annotated[
        BackendName | None, typer.Option(help="LLM backend; default: openai when --base-url is given, else local.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model name (openai); GGUF file path or gemma3-270m, a base model from its wheel (local)."),
    ] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable that holds the API key.")] = "OPENAI_API_KEY",
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names; default: all.")] = None,
    per_task: Annotated[int, typer.Option(help="Accepted candidates to produce per task.")] = 50,
    concurrency: Annotated[int, typer.Option(help="Concurrent requests (openai backend).")] = 16,
    seed: Annotated[int, typer.Option(help="Run seed: every call's seed derives from it.")] = 0,
    style: Annotated[
        str | None,
        typer.Option(
            help="Prompt style: instruct, continue, or complete (base models); "
            "default: continue (local), instruct (openai)."
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="plain (like the examples), attributes (one drawn situation) or rewrite (restate one).")
    ] = "plain",
    examples: Annotated[
        Path | None, typer.Option(help="Your own requests (JSONL or Parquet: text, task), shown as examples.")
    ] = None,
    with_seeds: Annotated[
        bool, typer.Option(help="Show the registry's seed requests beside your --examples, not instead of them.")
    ] = False,
    requests_per_call: Annotated[int, typer.Option(help="Requests asked for in each call.")] = 5,
    seeds_per_prompt: Annotated[int, typer.Option(help="Registry seed requests shown in each call.")] = 3,
    generated_per_prompt: Annotated[int, typer.Option(help="Earlier accepted requests shown in each call.")] = 2,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.9,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    max_tokens: Annotated[
        int | None, typer.Option(help="Token budget of each reply; default 96 (continue) or 160 (instruct).")
    ] = None,
    rpm: Annotated[float | None, typer.Option(help="Requests-per-minute limit (openai).")] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens-per-minute limit (openai).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one reply (openai).")] = 60.0,
    max_retries: Annotated[int, typer.Option(help="Retries of a failed call (openai).")] = 6,
    batch_size: Annotated[int, typer.Option(help="Rows decoded together (local).")] = 64,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (local); use fewer than the cores when sharing.")
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="auto, bfloat16 or float32 (local); auto picks bf16 where native.")
    ] = "auto",
    max_calls_per_task: Annotated[int | None, typer.Option(help="Give up on a task after this many calls.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Reply cache (SQLite); default: OUT/cache.sqlite.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    filter_inline: Annotated[
        bool, typer.Option("--filter/--no-filter", help="Run the filter cascade after every round.")
    ] = False,
    encoder: Annotated[str, typer.Option(help="Sentence encoder for --filter.")] = "all-MiniLM-L6-v2",
    learned_quality: LearnedQualityOn = True,
    quality_lm: QualityLm = True,
    judge_model: JudgeModel = None,
    judge_base_url: JudgeBaseUrl = None,
    judge_backend: JudgeBackend = None,
    judge_api_key_env: JudgeApiKeyEnv = "OPENAI_API_KEY",
    judge_concurrency: JudgeConcurrency = 16,
    judge_rpm: JudgeRpm = None,
    judge_cache: JudgeCache = None,
) -> None:
    """Generate candidate restoration requests with an LLM; re-running the same command resumes."""
    from instructir.prompts.cache import ReplyCache
    from instructir.prompts.generate import GenerationConfig, generate_candidates, write_generation
    from instructir.prompts.llm import BackendError

    chosen = backend or (BackendName.openai if base_url else BackendName.local)
    try:
        selected = resolve_tasks([tasks] if tasks else None)
        config = GenerationConfig(
            per_task=per_task,
            seed=seed,
            style=style or ("continue" if chosen is BackendName.local else "instruct"),
            mode=mode,
            examples=_examples(examples),
            examples_with_seeds=with_seeds,
            requests_per_call=requests_per_call,
            seeds_per_prompt=seeds_per_prompt,
            generated_per_prompt=generated_per_prompt,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            max_calls_per_task=max_calls_per_task,
        )
        llm = _make_backend(
            chosen,
            base_url,
            model,
            api_key_env,
            concurrency,
            rpm,
            tpm,
            timeout,
            max_retries,
            batch_size,
            threads,
            dtype,
        )
    except (ValueError, BackendError, FileNotFoundError) as error:
        fail(str(error))
    if judge_model and not filter_inline:
        fail("--judge-model judges the filtered candidates: add --filter")
    judge = None
    if judge_model:
        judge_settings = (judge_base_url, judge_backend, judge_api_key_env, judge_concurrency, judge_rpm, threads)
        judge = _judge(judge_model, *judge_settings, judge_cache or out / "judge_cache.sqlite", progress=False)
    replies = ReplyCache(cache or out / "cache.sqlite")
    per_round = None
    if filter_inline:
        from instructir.prompts.embed import Embedder
        from instructir.prompts.filters.cascade import FilterConfig, default_stages, inline_filter

        filter_config = FilterConfig(learned_quality=learned_quality, quality_lm=quality_lm)
        stages = default_stages(filter_config, Embedder(encoder)) + ([judge] if judge else [])
        per_round = inline_filter(stages, selected)
    judged = f" (judge answers in {judge.cache.path})" if judge else ""
    try:
        result = generate_candidates(
            llm, selected, config, replies, show_progress=progress and sys.stderr.isatty(), inline_filter=per_round
        )
    except BackendError as error:
        fail(f"{error}\n{replies.count()} replies are saved in {replies.path}{judged}; nothing done is lost.")
    except KeyboardInterrupt:
        saved = f"{replies.count()} replies are saved in {replies.path}{judged}"
        fail(f"interrupted. {saved}; run the same command to resume.", 130)
    finally:
        replies.close()
        if judge:
            judge.cache.close()
    result.summary["inline_filter"] = filter_inline
    if judge:
        result.summary["judge"] = judge.summary()
    paths = write_generation(result, out)
    print_summary(result.summary)
    for name, path in paths.items():
        console.print(f"{name}: {path}")
    if result.summary["candidates"] < per_task * len(selected):
        errors.print("[yellow]warning:[/] some tasks stopped short of --per-task; see summary.json")


def _examples(path: Path | None) -> tuple[tuple[str, str], ...]:
    """(task, text) pairs of a user's own requests, for --examples."""
    from instructir.prompts.candidates import read_candidates

    if path is None:
        return ()
    return tuple((row["task"], row["text"]) for row in read_candidates(path))


@prompts_app.command("filter")
def filter_command(
    candidates: Annotated[list[Path], typer.Argument(help="Parquet or JSONL files with at least text and task.")],
    out: Annotated[Path, typer.Option(help="Output folder for corpus.parquet, rejects.parquet, summary.json.")],
    encoder: Annotated[str, typer.Option(help="Sentence-transformers model (path or id) for the embedding stages.")] = (
        "all-MiniLM-L6-v2"
    ),
    near_threshold: Annotated[float, typer.Option(help="MinHash Jaccard threshold for near-duplicates.")] = 0.7,
    semantic_threshold: Annotated[float, typer.Option(help="Cosine threshold for semantic duplicates.")] = 0.85,
    label_margin: Annotated[float, typer.Option(help="Probability margin that flags a label mismatch.")] = 0.3,
    topic_threshold: Annotated[float, typer.Option(help="Least cosine to a seed of the row's own task.")] = 0.4,
    quality_threshold: Annotated[
        float | None,
        typer.Option(help="Least learned quality score kept; default: the model's own; 0 scores without dropping."),
    ] = None,
    learned_quality: LearnedQualityOn = True,
    quality_lm: QualityLm = True,
    opposite: Annotated[
        bool, typer.Option(help="Drop rows that ask for the opposite of their task (the registry's opposites).")
    ] = True,
    embeddings: Annotated[bool, typer.Option(help="Run the embedding stages (semantic dedup, labels).")] = True,
    seeds: Annotated[bool, typer.Option(help="Put the registry's seed requests first, as rows of the corpus.")] = True,
    embedding_cache: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
    embed_dtype: Annotated[
        str,
        typer.Option(help="Encoder precision: auto (bf16 where the CPU has it), bfloat16, float32, or int8 (ONNX)."),
    ] = "auto",
    judge_model: JudgeModel = None,
    judge_base_url: JudgeBaseUrl = None,
    judge_backend: JudgeBackend = None,
    judge_api_key_env: JudgeApiKeyEnv = "OPENAI_API_KEY",
    judge_concurrency: JudgeConcurrency = 16,
    judge_rpm: JudgeRpm = None,
    judge_cache: JudgeCache = None,
    progress: Annotated[bool, typer.Option(help="Show the judge's progress bar.")] = True,
) -> None:
    """Filter candidate requests: quality rules, requests for the opposite of their task, exact and near duplicates,
    the learned quality score, semantic duplicates, label consistency, and optionally an LLM judge of each row's
    task."""
    from instructir.prompts.candidates import read_many, write_filtered
    from instructir.prompts.embed import Embedder
    from instructir.prompts.filters.cascade import FilterConfig, default_stages, filter_candidates, seed_rows
    from instructir.prompts.llm import BackendError
    from instructir.tasks import all_tasks

    try:
        config = FilterConfig(
            near_threshold=near_threshold,
            semantic_threshold=semantic_threshold,
            label_margin=label_margin,
            topic_threshold=topic_threshold,
            quality_threshold=quality_threshold,
            learned_quality=learned_quality,
            quality_lm=quality_lm,
            opposite=opposite,
        )
        rows = read_many(candidates)
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
    if seeds:
        rows = seed_rows(all_tasks()) + rows
    try:
        embedder = Embedder(encoder, cache_dir=embedding_cache, dtype=embed_dtype) if embeddings else None
    except ValueError as error:
        fail(str(error))
    judge = None
    if judge_model:
        judge_settings = (judge_base_url, judge_backend, judge_api_key_env, judge_concurrency, judge_rpm, None)
        bar = progress and sys.stderr.isatty()
        judge = _judge(judge_model, *judge_settings, judge_cache or out / "judge_cache.sqlite", progress=bar)
    stages = default_stages(config, embedder) + ([judge] if judge else [])
    try:
        with contextlib.nullcontext() if judge and judge.show_progress else console.status("filtering"):
            result = filter_candidates(rows, stages)
    except BackendError as error:
        fail(f"judge: {error}\nits answers so far are saved in {judge.cache.path}; rerun to resume.")
    except KeyboardInterrupt:
        saved = f"; the judge's answers so far are saved in {judge.cache.path}" if judge else ""
        fail(f"interrupted{saved}; run the same command to resume.", 130)
    except RuntimeError as error:
        fail(str(error))
    finally:
        if judge:
            judge.cache.close()
    summary = {
        "inputs": [str(path) for path in candidates],
        "config": config.__dict__,
        "encoder": encoder,
        "encoder_dtype": embedder.dtype if embedder else None,
        "judge": judge.summary() if judge else None,
        **result.funnel,
    }
    paths = write_filtered(result.kept, result.rejects, summary, out)
    print_funnel(result.funnel)
    for name, path in paths.items():
        console.print(f"{name}: {path}")


@prompts_app.command("show")
def show_command(
    corpus: Annotated[str, typer.Argument(help="A shipped corpus's short name, or a Parquet/JSONL path.")] = (
        "instructir-requests"
    ),
    per_task: Annotated[int, typer.Option(help="Random samples to print per task.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for the samples.")] = 0,
) -> None:
    """Print a corpus's counts per task and random samples."""
    from instructir.prompts.corpus import load_corpus, resolve_corpus, samples_by_task

    try:
        rows = load_corpus(corpus).to_pylist()
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    console.print(f"{resolve_corpus(corpus)}: {len(rows)} rows", soft_wrap=True)
    table = Table("task", "rows", "samples")
    for task, texts in samples_by_task(rows, per_task, seed).items():
        table.add_row(task, str(counts[task]), "\n".join(texts))
    console.print(table)


def print_funnel(funnel: dict[str, Any]) -> None:
    """The filter funnel as a table: rows in and out of each stage, with the main reasons."""
    table = Table(title=f"filter: {funnel['in']} in, {funnel['out']} kept")
    for column in ("stage", "in", "out", "dropped by reason"):
        table.add_column(column)
    for step in funnel["stages"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(step["dropped_by_reason"].items(), key=lambda kv: -kv[1]))
        table.add_row(step["stage"], str(step["in"]), str(step["out"]), reasons or "-")
    console.print(table)
    console.print("kept per task: " + ", ".join(f"{k} {v}" for k, v in funnel["out_by_task"].items()))


def _make_backend(
    name: BackendName,
    base_url: str | None,
    model: str | None,
    api_key_env: str,
    concurrency: int,
    rpm: float | None,
    tpm: float | None,
    timeout: float,
    max_retries: int,
    batch_size: int,
    threads: int | None,
    dtype: str,
) -> Any:
    from instructir.prompts.llm import make_backend

    if name is BackendName.openai:
        return make_backend(
            "openai",
            model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            timeout=timeout,
            max_retries=max_retries,
        )
    return make_backend("local", model, batch_size=batch_size, threads=threads, dtype=dtype)


def _judge(
    model: str,
    base_url: str | None,
    backend: BackendName | None,
    api_key_env: str,
    concurrency: int,
    rpm: float | None,
    threads: int | None,
    cache: Path,
    progress: bool,
) -> Any:
    """The LLM judge stage with its reply cache, or exit saying what to fix."""
    from instructir.prompts.cache import ReplyCache
    from instructir.prompts.filters.judge import LLMJudge, make_judge_backend
    from instructir.prompts.llm import BackendError

    try:
        choice = backend.value if backend else None
        llm = make_judge_backend(model, base_url, choice, api_key_env, concurrency, rpm, threads)
    except (ValueError, BackendError, FileNotFoundError) as error:
        fail(f"judge: {error}")
    return LLMJudge(llm, ReplyCache(cache), show_progress=progress)


def print_summary(summary: dict[str, Any]) -> None:
    """The generation summary as a table: one row per task, then the totals."""
    table = Table(title=f"generation: {summary['backend']} / {summary['model']}")
    for column in ("task", "candidates", "calls", "cached", "failed", "failures", "top rejects", "tokens out", "tok/s"):
        table.add_column(column)
    for name, row in summary["tasks"].items():
        rejects = sorted(row["rejects_by_reason"].items(), key=lambda item: -item[1])[:3]
        table.add_row(
            name,
            f"{row['candidates']}/{row['target']}",
            str(row["calls"]),
            str(row["cached_calls"]),
            str(row["failed_calls"]),
            ", ".join(f"{k} {v}" for k, v in row["failures_by_reason"].items()) or "-",
            ", ".join(f"{k} {v}" for k, v in rejects) or "-",
            str(row["completion_tokens"]),
            str(row["tokens_per_second"] or "-"),
        )
    console.print(table)
    cost = summary["estimated_cost_usd"]
    console.print(
        f"{summary['candidates']} candidates from {summary['calls']} calls ({summary['new_calls']} new) in "
        f"{summary['wall_seconds']:.1f} s; {summary['tokens_per_second'] or 0} generated tokens/s; "
        f"cost {'unknown' if cost is None else f'${cost:.4f}'}"
    )


class DatasetFormat(str, Enum):
    arrow = "arrow"
    parquet = "parquet"


@data_app.command("build")
def data_build_command(
    out: Annotated[Path, typer.Option(help="Output folder for the DatasetDict, its card, summary and rejects.")],
    images: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of clean photos (searched recursively); repeat for more folders."),
    ] = None,
    image_list: Annotated[Path | None, typer.Option(help="Text file of clean photo paths, one per line.")] = None,
    samples: Annotated[bool, typer.Option(help="Use the photos that ship inside installed wheels (offline).")] = False,
    paired: Annotated[
        list[str] | None, typer.Option(help="Real paired set as KIND:DIR (lol, gopro, sots, rain100l, cbsd68, ...).")
    ] = None,
    corpus: Annotated[str, typer.Option(help="Requests: a shipped corpus name or a Parquet/JSONL file.")] = (
        "instructir-requests"
    ),
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names; default: all.")] = None,
    per_image: Annotated[int, typer.Option(help="Samples per clean image and task.")] = 4,
    patch: Annotated[int, typer.Option(help="Crop size (multiple of 16); 0 keeps whole images.")] = 256,
    seed: Annotated[int, typer.Option(help="Build seed: same seed, same bytes.")] = 0,
    mixtures: Annotated[float, typer.Option(help="Share of train samples that mix 2-3 tasks' degradations.")] = 0.0,
    num_proc: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    format: Annotated[DatasetFormat, typer.Option(help="arrow (save_to_disk) or parquet (image bytes embedded).")] = (
        DatasetFormat.arrow
    ),
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Then upload the dataset with a card to this Hub repo id (or a local folder).")
    ] = None,
) -> None:
    """Build a Hugging Face DatasetDict (train, validation, test) from clean photos and real pairs."""
    from instructir.datasets.build import BuildConfig, build_dataset
    from instructir.datasets.images import ImageError
    from instructir.datasets.instructions import InstructionPool
    from instructir.datasets.paired import import_paired
    from instructir.datasets.sources import folder_images, listed_images, sample_images

    try:
        config = BuildConfig(
            tasks=tuple(name.strip() for name in tasks.split(",")) if tasks else (),
            per_image=per_image,
            patch=patch,
            seed=seed,
            mixtures=mixtures,
            num_proc=num_proc,
            format=format.value,
            corpus=corpus,
            command=" ".join(["instructir", *sys.argv[1:]]),
        )
        config.validate()
        refs = []
        for folder in images or []:
            refs += folder_images(folder)
        if image_list is not None:
            refs += listed_images(image_list)
        if samples:
            refs += sample_images()
        pairs = [pair for spec in paired or [] for pair in import_paired(spec)]
        pool = InstructionPool.from_corpus(corpus)
        with warnings.catch_warnings(record=True):
            result = build_dataset(out, pool, refs, pairs, config, overwrite=overwrite, show_progress=progress)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, ImageError) as error:
        fail(str(error).strip('"'))
    summary = result.summary
    for split in summary["empty_splits"]:
        errors.print(f"[yellow]warning[/]: the {split} split is empty: too few photos decoded to give it one")
    table = Table("split", "samples", *[task.name for task in all_tasks()])
    for split, count in summary["by_split"].items():
        per_task = summary["by_task"][split]
        table.add_row(split, str(count), *[str(per_task.get(task.name, 0)) for task in all_tasks()])
    console.print(table)
    if summary["rejects"]:
        console.print(f"skipped {summary['rejects']} inputs: {summary['rejects_by_reason']} (see rejects.jsonl)")
    console.print(f"dataset: {result.path}")
    if push_to_hub:
        _push(result.path, push_to_hub, "dataset")


def _blocks(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Option(help="A dataset folder from `instructir data build` (arrow format).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints/, final.safetensors, log.csv, tensorboard/.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    batch: Annotated[int, typer.Option(help="Global batch size (split across processes).")] = 8,
    patch: Annotated[int, typer.Option(help="Training crop size (multiple of 16).")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 5e-4,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps before the cosine decay.")] = 50,
    text_weight: Annotated[float, typer.Option(help="Weight of the intent cross-entropy next to L1.")] = 0.1,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    log_every: Annotated[int, typer.Option(help="Steps between log lines.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and data order.")] = 0,
    width: Annotated[int, typer.Option(help="Channels at the first level (paper: 32).")] = 32,
    enc_blks: Annotated[str, typer.Option(help="NAFBlocks per encoder level (paper: 2,2,4,8).")] = "2,2,4,8",
    middle_blks: Annotated[int, typer.Option(help="Middle NAFBlocks (paper: 4).")] = 4,
    dec_blks: Annotated[str, typer.Option(help="NAFBlocks per decoder level (paper: 2,2,2,2).")] = "2,2,2,2",
    on_the_fly: Annotated[bool, typer.Option(help="Re-degrade each clean crop every epoch with a fresh request.")] = (
        False
    ),
    corpus: Annotated[str, typer.Option(help="Requests for --on-the-fly.")] = "instructir-requests",
    encoder: Annotated[
        str, typer.Option(help="Sentence encoder for the requests (path or id); the checkpoint records it.")
    ] = "all-MiniLM-L6-v2",
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 0,
    compile: Annotated[bool, typer.Option(help="torch.compile the network.")] = False,
    augment: Annotated[
        bool, typer.Option(help="With --on-the-fly: turn each clean crop, jitter its exposure, white balance, gamma.")
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune: start from this checkpoint's weights (same architecture); `shipped`: the default model."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest checkpoint.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Then upload the final weights, config and log to this Hub repo (or a folder).")
    ] = None,
) -> None:
    """Train InstructIR on a dataset (L1 + intent cross-entropy, AdamW, warm-up + cosine, EMA)."""
    from instructir.model.train import TrainConfig, TrainingError, print_status, train

    try:
        config = TrainConfig(
            data=str(data),
            out=str(out),
            steps=steps,
            batch=batch,
            patch=patch,
            lr=lr,
            warmup=warmup,
            text_weight=text_weight,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            seed=seed,
            width=width,
            enc_blks=_blocks(enc_blks),
            middle_blk_num=middle_blks,
            dec_blks=_blocks(dec_blks),
            on_the_fly=on_the_fly,
            corpus=corpus,
            encoder=encoder,
            workers=workers,
            compile=compile,
            augment=augment,
            init=str(init) if init else None,
        )
        bar = progress and sys.stderr.isatty()
        result = train(config, resume=resume, show_progress=bar, status=None if bar else print_status)
    except (ValueError, FileNotFoundError, FileExistsError, TrainingError) as error:
        fail(str(error))
    console.print(f"trained {result['steps']} steps; EMA weights: {result['final']}; log: {result['log']}")
    if push_to_hub:
        _push(Path(result["final"]).parent, push_to_hub, "checkpoint")


class DeviceName(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


# Below this intent probability, `restore` warns and names the two likeliest tasks.
LOW_CONFIDENCE = 0.6


EnsembleOption = Annotated[
    bool | None,
    typer.Option(
        "--ensemble/--no-ensemble",
        help="Average the outputs of four copies (as is, upside down, mirrored, both): 4x slower, usually better; "
        "default: what the model asks for (the shipped one does).",
    ),
]

KeepMeanOption = Annotated[
    bool | None,
    typer.Option(
        "--keep-mean/--no-keep-mean",
        help="For a request whose task keeps a photo's mean colour (Task.keeps_mean in the registry), shift the "
        "output back to the input's mean colour; default: what the model asks for (the shipped one does).",
    ),
]


ColourOption = Annotated[
    bool | None,
    typer.Option(
        "--colour/--no-colour",
        help="For a request whose task is a bad retouch (Task.global_colour: enhance), pass the output through the "
        "model's learned colour stage; default: on when the model has one (the shipped one does).",
    ),
]


def _restorer(
    checkpoint: Path | None,
    head: Path | None,
    device: DeviceName | None,
    encoder: str | None,
    ensemble: bool | None = None,
    keep_mean: bool | None = None,
    colour: bool | None = None,
) -> Any:
    """Load a Restorer (the given, quick-run or shipped model, named on stderr); a missing or unusable one exits 2."""
    from instructir.model.restore import Restorer
    from instructir.model.shipped import choose_checkpoint
    from instructir.pipeline.config import default_checkpoint
    from instructir.tasks import all_tasks

    try:
        checkpoint, why = choose_checkpoint(checkpoint, default_checkpoint())
    except FileNotFoundError as error:
        fail(str(error))
    errors.print(f"model: {checkpoint} ({why})", markup=False, highlight=False)
    if device is DeviceName.cuda:
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda was given but no CUDA device is available; use --device cpu")
    try:
        restorer = Restorer.from_checkpoint(
            checkpoint,
            encoder=encoder,
            device=device.value if device else None,
            head_path=head,
            ensemble=ensemble,
            keep_mean=keep_mean,
            colour=colour,
        )
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
    if restorer.ensemble:
        errors.print("self-ensemble: on (4 views per image; --no-ensemble is 4x faster)", markup=False)
    if restorer.keep_mean:
        kept = ", ".join(task.name for task in all_tasks() if task.keeps_mean)
        errors.print(f"mean colour kept for {kept} requests (--no-keep-mean to turn off)", markup=False)
    if restorer.colour_stage is not None:
        staged = ", ".join(task.name for task in all_tasks() if task.global_colour)
        errors.print(f"colour stage on for {staged} requests (--no-colour to turn off)", markup=False)
    return restorer


@app.command("restore")
def restore_command(
    source: Annotated[Path, typer.Argument(help="An image file, or a folder of images (searched recursively).")],
    instruction: Annotated[str, typer.Argument(help='What to do, in plain words, e.g. "remove the noise".')],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output file (one image in: .png, .jpg, .webp or .tif) or folder (PNGs)."),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Model + head (.safetensors), or the official im_*.pt; default: the quick run's model, else the "
            "one that ships."
        ),
    ] = None,
    head: Annotated[Path | None, typer.Option(help="Text head file for an official im_*.pt (lm_*.pt).")] = None,
    tile: Annotated[
        int | None, typer.Option(help="Tile size (multiple of 16); default: tile only images that are too large.")
    ] = None,
    device: Annotated[DeviceName | None, typer.Option(help="cpu or cuda; default: cuda when available.")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Sentence encoder; default: the one the text head was trained with.")
    ] = None,
    ensemble: EnsembleOption = None,
    keep_mean: KeepMeanOption = None,
    colour: ColourOption = None,
) -> None:
    """Restore an image or a folder of images as an instruction asks; unreadable images are skipped and reported."""
    from instructir.datasets.sources import IMAGE_EXTENSIONS
    from instructir.model.restore import restore_paths

    if not source.exists():
        fail(f"{source}: no such file or folder")
    if not instruction.strip():
        fail('the request is empty; say what to do, e.g. "remove the noise" or "make it brighter"')
    restorer = _restorer(checkpoint, head, device, encoder, ensemble, keep_mean, colour)
    try:
        ranked = restorer.intents(instruction)
        (task, confidence), (second, second_confidence) = ranked[0], ranked[1]
        console.print(f"intent: {task} ({confidence:.1%})")
        if confidence < LOW_CONFIDENCE:
            errors.print(
                f"[yellow]warning[/]: the request is unclear to the model: {task} ({confidence:.0%}) or {second} "
                f"({second_confidence:.0%}); name the problem (noise, blur, rain, haze, darkness, ...) to be sure"
            )
        if restorer.tasks is not None and task not in restorer.tasks:
            errors.print(
                f"[yellow]warning[/]: this model was not trained for {task} (it knows {', '.join(restorer.tasks)})"
            )
        reports = restore_paths(restorer, [source], instruction, out, tile=tile)
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as error:
        fail(str(error))
    if not reports:
        fail(f"{source}: no image files found ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    written = [report for report in reports if report["status"] == "written"]
    for report in reports:
        if report["status"] != "written":
            errors.print(f"[yellow]skipped[/] {report['input']}: {report['reason']}: {report['message']}")
    console.print(f"wrote {len(written)} of {len(reports)} images to {out}")
    if not written:
        raise typer.Exit(1)


def print_evaluation(result: dict[str, Any], title: str) -> None:
    """One row per task or group: count, PSNR and SSIM of the input and the restored images, intent accuracy."""
    from instructir.model.evaluate import SUMMARY_COLUMNS, summary_table

    channel = "Y channel" if result["primary"] == "y" else "RGB"
    table = Table(*SUMMARY_COLUMNS, title=f"{title}: input -> restored, {channel}")
    for row in summary_table(result):
        table.add_row(*row)
    console.print(table)


@app.command("eval")
def eval_command(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model + head (.safetensors), or the official im_*.pt; default: the quick run's or shipped."),
    ] = None,
    head: Annotated[Path | None, typer.Option(help="Text head file for an official im_*.pt (lm_*.pt).")] = None,
    data: Annotated[Path | None, typer.Option(help="A dataset folder from `instructir data build`.")] = None,
    split: Annotated[str, typer.Option(help="Dataset split (or paired-set split) to evaluate.")] = "test",
    paired: Annotated[
        list[str] | None, typer.Option(help="Benchmark set as KIND:DIR (lol, gopro, sots, rain100l, cbsd68, ...).")
    ] = None,
    instruction: Annotated[
        str | None, typer.Option(help="Instruction for --paired sets; default: a fixed plain request per task.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure and per-image row here.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate at most this many images per source.")] = None,
    crop_border: Annotated[int, typer.Option(help="Pixels cropped from each side before the metrics.")] = 0,
    device: Annotated[DeviceName | None, typer.Option(help="cpu or cuda; default: cuda when available.")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Sentence encoder; default: the one the text head was trained with.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ensemble: EnsembleOption = None,
    keep_mean: KeepMeanOption = None,
    colour: ColourOption = None,
) -> None:
    """Evaluate a checkpoint: PSNR/SSIM of restored vs input per task, and the text head's intent accuracy."""
    from instructir.io import write_json
    from instructir.model.evaluate import evaluate_dataset, evaluate_paired, jsonable

    if data is None and not paired:
        fail("give a dataset (--data DIR) and/or benchmark sets (--paired KIND:DIR)")
    if limit is not None and limit < 1:
        fail("--limit must be >= 1")
    restorer = _restorer(checkpoint, head, device, encoder, ensemble, keep_mean, colour)
    bar = progress and sys.stderr.isatty()
    results: dict[str, Any] = {"checkpoint": str(restorer.source)}
    try:
        if data is not None:
            result = evaluate_dataset(restorer, data, split, crop_border, limit, show_progress=bar)
            print_evaluation(result, f"{data} ({split})")
            results["dataset"] = result
        for spec in paired or []:
            result = evaluate_paired(restorer, spec, instruction, split, crop_border, limit, show_progress=bar)
            print_evaluation(result, spec)
            results.setdefault("paired", []).append(result)
    except (ValueError, FileNotFoundError, KeyError) as error:
        fail(str(error).strip('"'))
    if json_out is not None:
        console.print(f"results: {write_json(jsonable(results), json_out)}")


@app.command("demo")
def demo_command(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model + head (.safetensors); default: the quick run's model, else the one that ships."),
    ] = None,
    head: Annotated[Path | None, typer.Option(help="Text head file for an official im_*.pt (lm_*.pt).")] = None,
    host: Annotated[str, typer.Option(help="Address to serve on; 0.0.0.0 lets other machines connect.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 7860,
    share: Annotated[bool, typer.Option(help="Also open a public gradio.live link (needs internet).")] = False,
    ensemble: EnsembleOption = None,
    keep_mean: KeepMeanOption = None,
    colour: ColourOption = None,
) -> None:
    """Serve a web demo: upload a photo or pick an example, type a request, see and download the result."""
    from rich.markup import escape as markup_escape

    try:
        import gradio  # noqa: F401
    except ImportError:
        fail(markup_escape("the demo needs gradio, which is not installed; pip install 'instructir[demo]'"))
    from instructir.demo import build_demo, cache_folder, example_inputs

    restorer = _restorer(checkpoint, head, None, None, ensemble, keep_mean, colour)
    demo = build_demo(restorer, example_inputs(cache_folder() / "examples", tasks=restorer.tasks))
    console.print(f"serving {restorer.source} at http://{host}:{port} (Ctrl+C stops)")
    try:
        demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False)
    except OSError as error:
        fail(f"cannot serve on {host}:{port}: {error}; choose another --port")


RealDescription = Annotated[
    str,
    typer.Option(
        help='What the test requests are, named in the report, e.g. "real-style requests written for this project".'
    ),
]


def _labelled_or_fail(source: str | Path, description: str = "") -> Any:
    """``load_labelled(source)``, or exit with its message (which names the file and row) on bad input."""
    from instructir.analysis.labelled import load_labelled

    try:
        return load_labelled(source, description)
    except (ValueError, FileNotFoundError, KeyError) as error:
        fail(str(error).strip('"'))


@analyze_app.command("generalization")
def generalization_command(
    real: Annotated[Path, typer.Option(help="Real requests: JSONL or CSV with 'text' and 'task' fields.")],
    out: Annotated[Path, typer.Option(help="Report folder: report.html, report.md, metrics.json, figures/.")],
    corpus: Annotated[str, typer.Option(help="Training corpus: a shipped name, Parquet, JSONL or CSV.")] = (
        "instructir-requests"
    ),
    checkpoint: Annotated[
        Path | None, typer.Option(help="Model + head (.safetensors) for the PSNR-by-wording part (needs --data).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="A dataset folder from `instructir data build`.")] = None,
    split: Annotated[str, typer.Option(help="Dataset split for the PSNR part.")] = "test",
    limit: Annotated[int, typer.Option(help="Images per task for the PSNR part.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed for training, template sampling and request picks.")] = 0,
    model: Annotated[str | None, typer.Option(help="Sentence encoder; default: all-MiniLM-L6-v2.")] = None,
    real_description: RealDescription = "",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the intent classifier (text head and logistic probe) on a corpus and test it on real requests."""
    from instructir.analysis.generalization import generalization_report
    from instructir.prompts.embed import DEFAULT_ENCODER

    if (checkpoint is None) != (data is None):
        fail("the PSNR part needs both --checkpoint and --data")
    if limit < 1:
        fail("--limit must be >= 1")
    real_set, corpus_set = _labelled_or_fail(real, real_description), _labelled_or_fail(corpus)
    bar = progress and sys.stderr.isatty()
    try:
        path, metrics = generalization_report(
            corpus_set, real_set, out, model or DEFAULT_ENCODER, seed, checkpoint, data, limit, split, progress=bar
        )
    except (ValueError, FileNotFoundError, KeyError) as error:
        fail(str(error).strip('"'))
    console.print(
        f"head: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}; "
        f"probe: accuracy {metrics['probe']['accuracy']:.3f}, macro-F1 {metrics['probe']['macro_f1']:.3f}"
    )
    for name, scores in metrics["baselines"].items():
        console.print(f"head trained on {name}: accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}")
    console.print(f"report: {path}")


@analyze_app.command("ablation")
def ablation_command(
    real: Annotated[Path, typer.Option(help="Real requests: JSONL or CSV with 'text' and 'task' fields.")],
    out: Annotated[Path, typer.Option(help="Report folder: report.html, report.md, metrics.json, figures/.")],
    corpus: Annotated[str, typer.Option(help="Training corpus: a shipped name, Parquet, JSONL or CSV.")] = (
        "instructir-requests"
    ),
    sizes: Annotated[str, typer.Option(help="Comma-separated sizes of the random corpus subsets.")] = "1000,3000,10000",
    diverse: Annotated[int, typer.Option(help="Size of the diversity-pruned subset (0: none).")] = 3000,
    repeats: Annotated[int, typer.Option(help="Seeds per prompt set.")] = 3,
    seed: Annotated[int, typer.Option(help="First seed (runs use seed, seed+1, ...).")] = 0,
    model: Annotated[str | None, typer.Option(help="Sentence encoder; default: all-MiniLM-L6-v2.")] = None,
    real_description: RealDescription = "",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the text head on prompt sets of rising size and diversity; score each on real requests."""
    from instructir.analysis.ablation import ablation_metrics, build_report
    from instructir.prompts.embed import DEFAULT_ENCODER

    try:
        subset_sizes = tuple(int(part) for part in sizes.split(",") if part.strip())
    except ValueError:
        fail(f"--sizes must be comma-separated whole numbers, got {sizes!r}")
    if any(size < 1 for size in subset_sizes) or diverse < 0 or repeats < 1:
        fail("--sizes must be positive, --diverse >= 0 and --repeats >= 1")
    real_set, corpus_set = _labelled_or_fail(real, real_description), _labelled_or_fail(corpus)
    bar = progress and sys.stderr.isatty()
    metrics = ablation_metrics(
        corpus_set, real_set, subset_sizes, diverse or None, repeats, seed, model or DEFAULT_ENCODER, progress=bar
    )
    path = build_report(metrics).write(out, metrics)
    table = Table("prompt set", "requests", "accuracy", "macro-F1")
    for entry in metrics["sets"]:
        table.add_row(
            entry["set"],
            str(entry["size"]),
            f"{entry['accuracy']:.3f} ± {entry['accuracy_std']:.3f}",
            f"{entry['macro_f1']:.3f} ± {entry['macro_f1_std']:.3f}",
        )
    console.print(table)
    console.print(f"report: {path}")


@analyze_app.command("routing")
def routing_command(
    checkpoint: Annotated[Path, typer.Option(help="Model + head (.safetensors), or the official im_*.pt.")],
    out: Annotated[Path, typer.Option(help="Report folder: report.html, report.md, metrics.json, figures/.")],
    corpus: Annotated[str, typer.Option(help="Requests to route: a shipped name, Parquet, JSONL or CSV.")] = (
        "instructir-requests"
    ),
    real: Annotated[
        Path | None, typer.Option(help="Real requests (JSONL/CSV): do they route nearest their own task?")
    ] = None,
    head: Annotated[Path | None, typer.Option(help="Text head file for an official im_*.pt (lm_*.pt).")] = None,
    model: Annotated[
        str | None, typer.Option(help="Sentence encoder; default: the one the text head was trained with.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the shuffled-weights control.")] = 0,
    real_description: RealDescription = "",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Per-ICB channel gates of each task's requests: heatmaps, between-task cosines, real-request routing."""
    from instructir.analysis.routing import routing_report

    corpus_set = _labelled_or_fail(corpus)
    real_set = _labelled_or_fail(real, real_description) if real is not None else None
    bar = progress and sys.stderr.isatty()
    try:
        path, metrics = routing_report(checkpoint, corpus_set, out, real_set, head, model, seed, progress=bar)
    except (ValueError, FileNotFoundError) as error:
        fail(str(error).strip('"'))
    if real_set is not None:
        console.print(
            f"real requests nearest their own task's mean gates (all ICBs): "
            f"{metrics['nearest_own_mean_all_blocks']:.3f} (shuffled-weights control "
            f"{metrics['nearest_own_mean_shuffled_all']:.3f}, chance {metrics['chance']:.3f})"
        )
    console.print(f"report: {path}")


@analyze_app.command("clusters")
def clusters_command(
    corpus: Annotated[str, typer.Argument(help="Requests: a shipped corpus name, corpus folder, Parquet, JSONL, CSV.")],
    out: Annotated[Path, typer.Option(help="Report folder: report.html, report.md, metrics.json, figures/, scatter.")],
    model: Annotated[str | None, typer.Option(help="Sentence encoder; default: all-MiniLM-L6-v2.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for folds, subsamples, KMeans and UMAP.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """How well embeddings separate by task: silhouette, KMeans NMI/ARI, k-NN and probe accuracy, UMAP maps."""
    from instructir.analysis.clusters import cluster_report
    from instructir.prompts.embed import DEFAULT_ENCODER

    data = _labelled_or_fail(corpus)
    bar = progress and sys.stderr.isatty()
    try:
        path, metrics = cluster_report(data, out, model or DEFAULT_ENCODER, seed, progress=bar)
    except ValueError as error:
        fail(str(error))
    table = Table("metric", "value")
    table.add_row("requests", f"{metrics['rows']:,}")
    table.add_row("silhouette (cosine)", f"{metrics['silhouette']['overall']:.3f}")
    table.add_row("KMeans NMI / ARI", f"{metrics['kmeans']['nmi']:.3f} / {metrics['kmeans']['ari']:.3f}")
    table.add_row(f"{metrics['knn']['k']}-NN accuracy", f"{metrics['knn']['accuracy']:.3f}")
    table.add_row("linear probe accuracy", f"{metrics['probe']['accuracy']:.3f}")
    table.add_row(
        "HDBSCAN clusters / noise", f"{metrics['hdbscan']['clusters']} / {metrics['hdbscan']['noise_fraction']:.1%}"
    )
    pairs = ", ".join(f"{p['a']}/{p['b']} {p['rate']:.1%}" for p in metrics["confusable_pairs"][:3])
    table.add_row("most confusable pairs", pairs or "-")
    console.print(table)
    console.print(f"report: {path}")
    console.print(f"interactive map: {path.parent / 'scatter.html'}")


@analyze_app.command("diversity")
def diversity_command(
    corpus: Annotated[str, typer.Argument(help="Requests: a shipped corpus name, corpus folder, Parquet, JSONL, CSV.")],
    out: Annotated[Path, typer.Option(help="Report folder: report.html, report.md, metrics.json, figures/.")],
    other: Annotated[str | None, typer.Argument(help="A second request set to compare with, side by side.")] = None,
    names: Annotated[str | None, typer.Option(help="Comma-separated display names, one per corpus.")] = None,
    model: Annotated[str | None, typer.Option(help="Sentence encoder; default: all-MiniLM-L6-v2.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for subsamples, folds and KMeans.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Diversity of one request set, or two side by side: distinct-n, lengths, Vendi, domain AUC, MAUVE."""
    from instructir.analysis.diversity import diversity_report
    from instructir.prompts.embed import DEFAULT_ENCODER

    sets = [_labelled_or_fail(source) for source in ([corpus] if other is None else [corpus, other])]
    labels = [part.strip() for part in names.split(",")] if names else None
    if labels is not None and (len(labels) != len(sets) or not all(labels)):
        fail(f"--names needs {len(sets)} non-empty comma-separated name(s), got {names!r}")
    bar = progress and sys.stderr.isatty()
    try:
        path, metrics = diversity_report(sets, out, labels, model or DEFAULT_ENCODER, seed, progress=bar)
    except ValueError as error:
        fail(str(error))
    table = Table("metric", *metrics["corpora"])
    overall = [metrics["overall"][name] for name in metrics["corpora"]]
    keys = {
        "requests": "rows",
        "distinct-1": "distinct_1",
        "distinct-2": "distinct_2",
        "distinct-3": "distinct_3",
        "vocabulary": "vocabulary",
        "Vendi score": "vendi",
    }
    for label, key in keys.items():
        table.add_row(label, *(_number(entry[key]) for entry in overall))
    table.add_row("mean words", *(_number(entry["length_words"]["mean"]) for entry in overall))
    table.add_row("mean NN cosine", *(_number(entry["mean_nn_cosine"]) for entry in overall))
    console.print(table)
    if "pair" in metrics:
        console.print(f"domain AUC {metrics['pair']['domain_auc']:.3f}, MAUVE {metrics['pair']['mauve']:.3f}")
    console.print(f"report: {path}")


def _number(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def _push(folder: Path, repo: str, kind: str) -> None:
    """Upload a corpus, dataset or checkpoint folder with its card, or exit with what went wrong."""
    from instructir.hub import PushError, publish

    try:
        where = publish(folder, repo, kind)
    except (PushError, ValueError, FileNotFoundError) as error:
        fail(f"{error}\nThe {kind} itself is complete in {folder}; nothing there was changed.")
    console.print(f"pushed the {kind} to {where}")


@prompts_app.command("push")
def prompts_push_command(
    corpus: Annotated[str, typer.Argument(help="A corpus folder (corpus.parquet, README.md) or a shipped name.")],
    repo: Annotated[str, typer.Argument(help="Hub dataset repo id, e.g. user/requests (or a local folder).")],
) -> None:
    """Upload a request corpus with its dataset card to the Hugging Face Hub."""
    from instructir.prompts.corpus import resolve_corpus

    try:
        path = resolve_corpus(corpus)
    except FileNotFoundError as error:
        fail(str(error))
    if path.name != "corpus.parquet":
        fail(f"{corpus}: give a corpus folder (from `instructir prompts filter`), not a single file")
    _push(path.parent, repo, "corpus")
