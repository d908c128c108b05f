"""The six stages of a run. Each is ``stage(config, folder, outputs, progress) -> outputs`` over library calls.

``outputs`` maps earlier stages to the files they produced (their returned dicts), so a stage reads its inputs
from there. Generation (reply cache) and training (checkpoints) resume in place after a kill; the other stages
are rerun from a clean folder, which is cheap and gives the same bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instructir.pipeline.config import RunConfig
from instructir.tasks import resolve_tasks

Outputs = dict[str, dict[str, str]]


def generate(config: RunConfig, folder: Path, outputs: Outputs, progress: bool) -> dict[str, str]:
    """Generate candidate requests with the configured LLM; completed calls are replayed from the reply cache."""
    from instructir.prompts.cache import ReplyCache
    from instructir.prompts.generate import GenerationConfig, generate_candidates, write_generation
    from instructir.prompts.llm import make_backend

    settings = config.generate
    if settings.backend == "openai":
        backend = make_backend(
            "openai",
            settings.model,
            base_url=settings.base_url,
            api_key_env=settings.api_key_env,
            concurrency=settings.concurrency,
        )
    else:
        backend = make_backend("local", settings.model, threads=settings.threads)
    style = "continue" if settings.backend == "local" else "instruct"
    generation = GenerationConfig(
        per_task=settings.per_task, seed=config.seed, style=style, temperature=settings.temperature
    )
    replies = ReplyCache(folder / "cache.sqlite")
    try:
        result = generate_candidates(
            backend, resolve_tasks(settings.tasks or None), generation, replies, show_progress=progress
        )
    finally:
        replies.close()
    paths = write_generation(result, folder)
    return {name: str(path) for name, path in paths.items()}


def filter_requests(config: RunConfig, folder: Path, outputs: Outputs, progress: bool) -> dict[str, str]:
    """Run the filtering cascade over the candidates, with the registry seeds first, and the LLM judge last when
    configured. The judge's reply cache sits beside the stage folders, so the answers outlive the clean folder
    a rerun or a changed setting starts from: no judge call is ever sent twice."""
    from instructir.prompts.cache import ReplyCache
    from instructir.prompts.candidates import read_many, write_filtered
    from instructir.prompts.embed import Embedder
    from instructir.prompts.filters.cascade import FilterConfig, default_stages, filter_candidates, seed_rows
    from instructir.prompts.filters.judge import LLMJudge, make_judge_backend

    settings = config.filter
    filter_config = FilterConfig(
        near_threshold=settings.near_threshold,
        semantic_threshold=settings.semantic_threshold,
        label_margin=settings.label_margin,
        topic_threshold=settings.topic_threshold,
        learned_quality=settings.learned_quality,
        quality_lm=settings.quality_lm,
        quality_threshold=settings.quality_threshold,
    )
    rows = seed_rows(resolve_tasks(config.generate.tasks or None)) + read_many([outputs["generate"]["candidates"]])
    embedder = Embedder(config.encoder) if settings.embeddings else None
    stages = default_stages(filter_config, embedder)
    judge = None
    if settings.judge is not None:
        chosen, threads = settings.judge, config.generate.threads
        backend = make_judge_backend(
            chosen.model, chosen.base_url, chosen.backend, chosen.api_key_env, chosen.concurrency, threads=threads
        )
        judge = LLMJudge(backend, ReplyCache(folder.parent / "judge_cache.sqlite"), show_progress=progress)
        stages.append(judge)
    try:
        result = filter_candidates(rows, stages)
    finally:
        if judge is not None:
            judge.cache.close()
    summary = {
        "inputs": [outputs["generate"]["candidates"]],
        "config": filter_config.__dict__,
        "judge": judge.summary() if judge else None,
        **result.funnel,
    }
    paths = write_filtered(result.kept, result.rejects, summary, folder)
    return {name: str(path) for name, path in paths.items()}


def dataset_corpus(config: RunConfig, outputs: Outputs) -> str:
    """The corpus the dataset (and so the text head) draws requests from."""
    if config.dataset.corpus == "generated":
        return outputs["filter"]["corpus"]
    return config.dataset.corpus


def build(config: RunConfig, folder: Path, outputs: Outputs, progress: bool) -> dict[str, str]:
    """Build the (instruction, degraded, clean) dataset from the configured photos and paired sets."""
    from instructir.datasets.build import BuildConfig, build_dataset
    from instructir.datasets.instructions import InstructionPool
    from instructir.datasets.paired import import_paired
    from instructir.datasets.sources import folder_images, sample_images

    settings = config.dataset
    corpus = dataset_corpus(config, outputs)
    build_config = BuildConfig(
        tasks=tuple(settings.tasks),
        per_image=settings.per_image,
        patch=settings.patch,
        seed=config.seed,
        mixtures=settings.mixtures,
        num_proc=settings.num_proc,
        corpus=corpus,
        command=f"instructir run (profile {config.profile})",
    )
    build_config.validate()
    images = sample_images() if settings.images == "samples" else folder_images(settings.images)
    pairs = [pair for spec in settings.paired for pair in import_paired(spec)]
    pool = InstructionPool.from_corpus(corpus)
    result = build_dataset(folder / "dataset", pool, images, pairs, build_config, show_progress=progress)
    return {"dataset": str(result.path), "summary": str(folder / "dataset" / "summary.json")}


def training_config(config: RunConfig, data: str, out: Path, corpus: str) -> Any:
    """The TrainConfig of a run's train stage: its settings, seed and encoder, on ``data``, writing to ``out``."""
    from instructir.model.train import TrainConfig

    settings = config.train
    return TrainConfig(
        data=data,
        out=str(out),
        steps=settings.steps,
        batch=settings.batch,
        patch=settings.patch,
        lr=settings.lr,
        warmup=settings.warmup,
        text_weight=settings.text_weight,
        checkpoint_every=settings.checkpoint_every,
        seed=config.seed,
        width=settings.width,
        enc_blks=tuple(settings.enc_blks),
        middle_blk_num=settings.middle_blks,
        dec_blks=tuple(settings.dec_blks),
        encoder=config.encoder,
        on_the_fly=settings.on_the_fly,
        corpus=corpus,
        workers=settings.workers,
        compile=settings.compile,
        augment=settings.augment,
        init=settings.init,
    )


def train(config: RunConfig, folder: Path, outputs: Outputs, progress: bool) -> dict[str, str]:
    """Train (or resume training) InstructIR on the dataset; multi-GPU through ``accelerate launch``."""
    from instructir.model.train import latest_checkpoint, print_status
    from instructir.model.train import train as train_model

    settings = config.train
    corpus = dataset_corpus(config, outputs)
    train_config = training_config(config, outputs["dataset"]["dataset"], folder / "model", corpus)
    model_folder = folder / "model"
    resume = latest_checkpoint(model_folder) is not None
    if not resume and model_folder.exists():
        shutil.rmtree(model_folder)
    if settings.launcher == "accelerate":
        subprocess.run(accelerate_command(train_config, settings.num_processes, resume), check=True)
    else:
        train_model(train_config, resume=resume, show_progress=progress, status=None if progress else print_status)
    return {"checkpoint": str(model_folder / "final.safetensors"), "log": str(model_folder / "log.csv")}


def evaluate(config: RunConfig, folder: Path, outputs: Outputs, progress: bool) -> dict[str, str]:
    """PSNR/SSIM per task of the trained model on the dataset's evaluation split."""
    from instructir.io import write_json
    from instructir.model.evaluate import evaluate_dataset, jsonable
    from instructir.model.restore import Restorer

    settings = config.evaluate
    restorer = Restorer.from_checkpoint(outputs["train"]["checkpoint"])
    result = evaluate_dataset(
        restorer, outputs["dataset"]["dataset"], settings.split, settings.crop_border, settings.limit, progress
    )
    path = write_json(jsonable(result), folder / "evaluation.json")
    (folder / "evaluation.md").write_text(evaluation_table(result), encoding="utf-8")
    return {"evaluation": str(path), "table": str(folder / "evaluation.md")}


def analyze(config: RunConfig, folder: Path, outputs: Outputs, progress: bool) -> dict[str, str]:
    """Cluster and diversity reports of the run's requests; with real requests, the synthetic-to-real report
    (PSNR by wording with the trained model) and the gate-routing report."""
    from instructir.analysis.labelled import load_labelled

    settings = config.analyze
    corpus = load_labelled(outputs["filter"]["corpus"])
    model, seed = config.encoder, config.seed
    produced: dict[str, str] = {}
    if settings.clusters:
        from instructir.analysis.clusters import cluster_report

        path, _ = cluster_report(corpus, folder / "clusters", model, seed, progress=progress)
        produced["clusters"] = str(path)
    if settings.diversity:
        from instructir.analysis.diversity import diversity_report

        sets, names = [corpus], ["this run"]
        if settings.compare_with:
            sets.append(load_labelled(settings.compare_with))
            names.append(Path(settings.compare_with).name)
        path, _ = diversity_report(sets, folder / "diversity", names, model, seed, progress=progress)
        produced["diversity"] = str(path)
    if settings.real:
        from instructir.analysis.generalization import generalization_report
        from instructir.analysis.routing import routing_report

        real = load_labelled(settings.real, settings.real_description)
        trained_on = load_labelled(dataset_corpus(config, outputs))
        checkpoint, data = outputs["train"]["checkpoint"], outputs["dataset"]["dataset"]
        path, _ = generalization_report(
            trained_on, real, folder / "generalization", model, seed, checkpoint, data, progress=progress
        )
        produced["generalization"] = str(path)
        path, _ = routing_report(checkpoint, trained_on, folder / "routing", real, seed=seed, progress=progress)
        produced["routing"] = str(path)
    return produced


def evaluation_table(result: dict[str, Any]) -> str:
    """The evaluation summary (input -> restored, per task) as a Markdown table."""
    from instructir.model.evaluate import SUMMARY_COLUMNS, summary_table

    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|---" * len(SUMMARY_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in summary_table(result)]
    return "\n".join(lines) + "\n"


def accelerate_command(config: Any, processes: int, resume: bool) -> list[str]:
    """`accelerate launch ... instructir train` with every setting of ``config`` (a TrainConfig) as a flag."""
    options = {
        "data": config.data,
        "out": config.out,
        "steps": config.steps,
        "batch": config.batch,
        "patch": config.patch,
        "lr": config.lr,
        "warmup": config.warmup,
        "text-weight": config.text_weight,
        "checkpoint-every": config.checkpoint_every,
        "log-every": config.log_every,
        "seed": config.seed,
        "width": config.width,
        "enc-blks": ",".join(map(str, config.enc_blks)),
        "middle-blks": config.middle_blk_num,
        "dec-blks": ",".join(map(str, config.dec_blks)),
        "corpus": config.corpus,
        "encoder": config.encoder,
        "workers": config.workers,
    }
    flags = [f"--{key}={value}" for key, value in options.items()]
    flags += ["--on-the-fly"] if config.on_the_fly else []
    flags += ["--compile"] if config.compile else []
    flags += ["--augment"] if config.augment else []
    flags += [f"--init={config.init}"] if config.init else []
    flags += ["--resume"] if resume else []
    launcher = [sys.executable, "-m", "accelerate.commands.launch", f"--num_processes={processes}"]
    return [*launcher, "-m", "instructir", "train", *flags]


STAGE_FUNCTIONS: dict[str, Callable[[RunConfig, Path, Outputs, bool], dict[str, str]]] = {
    "generate": generate,
    "filter": filter_requests,
    "dataset": build,
    "train": train,
    "evaluate": evaluate,
    "analyze": analyze,
}

RESUMES_IN_PLACE = frozenset({"generate", "train"})
