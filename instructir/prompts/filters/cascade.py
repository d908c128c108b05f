"""Run the filtering stages in order and keep the funnel: rows in and out per stage and per task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from instructir.prompts.embed import Embedder
from instructir.prompts.filters.exact import ExactDedup
from instructir.prompts.filters.label_consistency import LabelConsistency
from instructir.prompts.filters.near_duplicates import NearDuplicates
from instructir.prompts.filters.opposite import OppositeRequest
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.quality_model import (
    FAST_FILE,
    LearnedQuality,
    load_quality_model,
    shipped_model_path,
)
from instructir.prompts.filters.semantic import SemanticDedup
from instructir.prompts.filters.stage import Row, Stage
from instructir.prompts.filters.topic import TopicRelevance
from instructir.tasks import Task


@dataclass(frozen=True)
class FilterConfig:
    """The cascade's parameters; each stage can be switched off.

    Thresholds were chosen on the hand-labelled set in corpus/dev/ (see corpus/evaluate_filter.py): Jaccard 0.7
    and cosine 0.85 keep the dedup stages' precision above 0.97; topic 0.4 lifts the share of kept rows whose
    label is right from 0.59 to 0.70 on the embedded model's output while keeping about 80% of the rows.
    ``quality_threshold`` None takes the learned quality model's own threshold (chosen by cross-validation on the
    audit set's fit half, see corpus/quality/train.py); 0 scores every row without dropping any. ``quality_lm``
    uses the model that also reads the embedded LLM's hidden states (after the embedding-only model as a
    prefilter); off, the embedding-only model decides alone at its own threshold. ``opposite`` drops rows that ask
    for the opposite of their task (the registry's ``opposites``): 13 of the 13 audit fit-half rows it matches are
    wrong.
    """

    near_threshold: float = 0.7
    quality_threshold: float | None = None
    semantic_threshold: float = 0.85
    label_margin: float = 0.3
    topic_threshold: float = 0.4
    require_request_cue: bool = True
    opposite: bool = True
    learned_quality: bool = True
    quality_lm: bool = True
    semantic: bool = True
    labels: bool = True
    topic: bool = True


@dataclass
class FilterResult:
    """Kept rows, dropped rows (each with ``stage`` and ``reason``) and the funnel."""

    kept: list[Row]
    rejects: list[Row]
    funnel: dict[str, Any] = field(default_factory=dict)


def default_stages(config: FilterConfig, embedder: Embedder | None) -> list[Stage]:
    """The standard cascade: cheap stages first, embedding stages last; the learned quality stage runs before
    semantic dedup, so a duplicate group keeps a row that passed it, and the one it scores highest."""
    stages: list[Stage] = [QualityRules(require_request_cue=config.require_request_cue)]
    if config.opposite:
        stages.append(OppositeRequest())
    stages += [ExactDedup(), NearDuplicates(threshold=config.near_threshold)]
    if embedder is not None and config.learned_quality:
        stages.append(learned_quality_stage(embedder, config))
    if embedder is not None and config.semantic:
        prefer = "quality" if config.learned_quality else None
        stages.append(SemanticDedup(embedder, threshold=config.semantic_threshold, prefer=prefer))
    if embedder is not None and config.labels:
        stages.append(LabelConsistency(embedder, margin=config.label_margin))
    if embedder is not None and config.topic:
        stages.append(TopicRelevance(embedder, min_similarity=config.topic_threshold))
    return stages


def learned_quality_stage(embedder: Embedder, config: FilterConfig) -> LearnedQuality:
    """The learned quality stage as ``config`` asks: the LLM-reading model behind the fast prefilter, or the
    fast model alone. It embeds with the encoder its model was trained on, whatever the cascade's encoder."""
    from instructir.prompts.lm_embed import LMEmbedder

    fast = load_quality_model(shipped_model_path(FAST_FILE))
    folder = embedder.cache_path.parent
    own = embedder
    if embedder.model_name != fast.encoder:
        own = Embedder(fast.encoder, cache_dir=folder, dtype=embedder.dtype)
    if not config.quality_lm:
        return LearnedQuality(own, fast, threshold=config.quality_threshold)
    full = load_quality_model()
    lm = LMEmbedder(cache_dir=folder)
    cut = config.quality_threshold
    return LearnedQuality(own, full, threshold=cut, lm_embedder=lm, prefilter=(fast, fast.threshold))


def seed_rows(tasks: list[Task] | tuple[Task, ...]) -> list[Row]:
    """The registry's hand-written requests as rows, so generated copies of them count as duplicates."""
    return [
        {"id": f"seed-{task.name}-{i:02d}", "text": text, "task": task.name, "source": "seed"}
        for task in tasks
        for i, text in enumerate(task.seeds)
    ]


def filter_candidates(rows: list[Row], stages: list[Stage]) -> FilterResult:
    """Pass ``rows`` through every stage in order."""
    rejects: list[Row] = []
    steps = []
    current = rows
    for stage in stages:
        result = stage.run(current)
        for row in result.dropped:
            row["stage"] = stage.name
        rejects.extend(result.dropped)
        steps.append(
            {
                "stage": stage.name,
                "in": len(current),
                "out": len(result.kept),
                "dropped_by_reason": dict(Counter(row["reason"] for row in result.dropped)),
                "out_by_task": dict(sorted(Counter(row["task"] for row in result.kept).items())),
            }
        )
        current = result.kept
    funnel = {
        "in": len(rows),
        "out": len(current),
        "in_by_task": dict(sorted(Counter(row["task"] for row in rows).items())),
        "out_by_task": dict(sorted(Counter(row["task"] for row in current).items())),
        "stages": steps,
    }
    return FilterResult(current, rejects, funnel)


def inline_filter(stages: list[Stage], tasks: list[Task] | tuple[Task, ...]):
    """The cascade as generation's per-round filter: seed requests go first so copies of them are duplicates;
    returns (kept candidates, dropped candidates) without the seeds."""

    def run(rows: list[Row]) -> tuple[list[Row], list[Row]]:
        result = filter_candidates(seed_rows(tasks) + rows, stages)
        kept = [row for row in result.kept if row.get("source") != "seed"]
        dropped = [row for row in result.rejects if row.get("source") != "seed"]
        return kept, dropped

    return run
