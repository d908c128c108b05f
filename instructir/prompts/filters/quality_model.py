"""The learned quality stage: a small classifier that scores how likely a row is a coherent request for the task
it is labelled with, trained on hand-labelled generated rows (the FineWeb-Edu recipe at small scale).

One multinomial logistic model over the registry's tasks plus "none" (not a request, or none of the tasks), on
the sentence embedding and a few cheap text signals (length, request cues, person, question). It learns from the
audit set's fit half (each row's true class, read by hand) and from hand-written requests (seeds, templates);
a row's quality is p(its own label | text), so one model judges both "is this a request" and "is the label
right". The arrays sit in one safetensors file with JSON metadata (no pickle), so the shipped file loads without
scikit-learn and scores 20,000 cached rows in well under a second. The generator's own per-token log-likelihood
was tried as a signal and left out: on the fit half it moved the cross-validated ROC AUC by 0.001, and computing it
runs the LLM over every row (24 rows/s here).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from instructir.prompts.embed import Embedder
from instructir.prompts.filters.quality import has_request_cue
from instructir.prompts.filters.stage import Row, StageResult
from instructir.tasks import task_names

SHIPPED_FILE = "quality-v1.safetensors"
FAST_FILE = "quality-v1-fast.safetensors"
_SECOND_PERSON = re.compile(r"\b(?:you|your|you're|yours)\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|my|me|i'm|i've|i'd|we|our|us)\b", re.IGNORECASE)
_ASKS = re.compile(r"^(?:can|could|would|will|please|pls|plz)\b", re.IGNORECASE)
SIGNALS = (
    "log_words",
    "log_chars",
    "sentences",
    "request_cue",
    "question",
    "second_person",
    "first_person",
    "starts_with_ask",
    "digit_share",
    "upper_share",
)


def text_signals(texts: list[str]) -> np.ndarray:
    """Cheap per-row signals, in the order of ``SIGNALS``."""
    rows = []
    for text in texts:
        words = text.split()
        letters = [ch for ch in text if ch.isalpha()]
        rows.append(
            [
                np.log1p(len(words)),
                np.log1p(len(text)),
                len(re.findall(r"[.!?]+(?:\s|$)", text)),
                float(has_request_cue(text)),
                float("?" in text),
                float(bool(_SECOND_PERSON.search(text))),
                float(bool(_FIRST_PERSON.search(text))),
                float(bool(_ASKS.search(text))),
                sum(ch.isdigit() for ch in text) / max(len(text), 1),
                sum(ch.isupper() for ch in letters) / max(len(letters), 1),
            ]
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), len(SIGNALS))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class QualityModel:
    """A multinomial logistic model over the registry's tasks plus "none" (not a request, or no registry task);
    a row's quality is the probability of its own label.

    Inputs, in blocks: the sentence embedding, the text signals and, when ``lm_encoder`` is set, the generator's
    hidden-state vector (lm_embed.py); the last two standardised on the fit rows. Each block is multiplied by its
    ``scales`` entry, which sets how strongly the one L2 penalty holds it back.
    """

    classes: tuple[str, ...]
    encoder: str
    lm_encoder: str | None
    scales: dict[str, float]
    standardise: dict[str, tuple[np.ndarray, np.ndarray]]
    weight: np.ndarray
    bias: np.ndarray
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def features(self, vectors: np.ndarray, texts: list[str], lm_vectors: np.ndarray | None = None) -> np.ndarray:
        """The model's inputs for each row."""
        blocks = {"embedding": vectors, "signals": text_signals(texts)}
        if self.lm_encoder:
            if lm_vectors is None:
                raise ValueError(f"this quality model also reads {self.lm_encoder} vectors; pass lm_vectors")
            blocks["lm"] = lm_vectors
        parts = []
        for name, block in blocks.items():
            mean, scale = self.standardise.get(name, (0.0, 1.0))
            parts.append((block - mean) / scale * self.scales[name])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def probabilities(self, vectors: np.ndarray, texts: list[str], lm_vectors: np.ndarray | None = None) -> np.ndarray:
        """p(class | text) for each row, columns in ``classes`` order."""
        return _softmax(self.features(vectors, texts, lm_vectors) @ self.weight.T + self.bias)

    def score(
        self, vectors: np.ndarray, labels: list[str], texts: list[str], lm_vectors: np.ndarray | None = None
    ) -> np.ndarray:
        """Probability that each row is a coherent request for its own label."""
        unknown = sorted(set(labels) - set(self.classes[:-1]))
        if unknown:
            raise ValueError(f"the quality model knows tasks {', '.join(self.classes[:-1])}, not {', '.join(unknown)}")
        index = np.array([self.classes.index(label) for label in labels], dtype=np.int64)
        return self.probabilities(vectors, texts, lm_vectors)[np.arange(len(labels)), index]

    def save(self, path: str | Path) -> Path:
        """Write the arrays and metadata to a safetensors file."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"weight": self.weight, "bias": self.bias}
        for name, (mean, scale) in self.standardise.items():
            arrays[f"{name}_mean"], arrays[f"{name}_scale"] = mean, scale
        metadata = {
            "classes": json.dumps(list(self.classes)),
            "signals": json.dumps(list(SIGNALS)),
            "encoder": self.encoder,
            "lm_encoder": self.lm_encoder or "",
            "scales": json.dumps(self.scales),
            "threshold": repr(float(self.threshold)),
            "info": json.dumps(self.info),
        }
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(path), metadata)
        return path


def shipped_model_path(name: str = SHIPPED_FILE) -> Path:
    """Where a quality model shipped in the package lies."""
    return Path(str(resources.files("instructir") / "data" / "quality" / name))


def load_quality_model(path: str | Path | None = None) -> QualityModel:
    """A saved quality model, or the one shipped in the package when ``path`` is None."""
    from safetensors import safe_open

    source = Path(path) if path else shipped_model_path()
    if not source.is_file():
        raise FileNotFoundError(f"no quality model at {source}; train one with corpus/quality/train.py")
    with safe_open(str(source), framework="numpy") as handle:
        meta = handle.metadata() or {}
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
    missing = {"classes", "signals", "encoder", "scales", "threshold"} - set(meta)
    if missing:
        raise ValueError(f"{source} is not an instructir quality model (missing {', '.join(sorted(missing))})")
    if json.loads(meta["signals"]) != list(SIGNALS):
        raise ValueError(f"{source} was trained on other text signals than this version computes; retrain it")
    classes = tuple(json.loads(meta["classes"]))
    unknown = sorted(set(classes[:-1]) - set(task_names()))
    if unknown:
        raise ValueError(f"{source} was trained for tasks this registry lacks: {', '.join(unknown)}")
    names = {key[: -len("_mean")] for key in arrays if key.endswith("_mean")}
    return QualityModel(
        classes=classes,
        encoder=meta["encoder"],
        lm_encoder=meta.get("lm_encoder") or None,
        scales=json.loads(meta["scales"]),
        standardise={name: (arrays[f"{name}_mean"], arrays[f"{name}_scale"]) for name in names},
        weight=arrays["weight"],
        bias=arrays["bias"],
        threshold=float(meta["threshold"]),
        info=json.loads(meta.get("info", "{}")),
    )


@dataclass
class LearnedQuality:
    """Filter stage: score every row, write the score to a ``quality`` column, drop rows below the threshold.

    A model that reads the generator's hidden states needs ``lm_embedder``; since those vectors cost a forward
    pass of the LLM, ``prefilter`` (a cheaper model on the embedding alone, and its threshold) can drop the
    obvious failures first: they get its score and the reason ``low_quality_prefilter``.
    """

    embedder: Embedder
    model: QualityModel
    threshold: float | None = None
    lm_embedder: Embedder | None = None
    prefilter: tuple[QualityModel, float] | None = None
    show_progress: bool = False
    name: str = "learned_quality"

    def scores(self, rows: list[Row], model: QualityModel | None = None) -> np.ndarray:
        """The quality score of each row under ``model`` (default: the stage's model)."""
        model = model or self.model
        if not rows:
            return np.zeros(0)
        texts = [row["text"] for row in rows]
        lm_vectors = None
        if model.lm_encoder:
            if self.lm_embedder is None:
                raise ValueError(f"this quality model reads {model.lm_encoder} vectors; give the stage an lm_embedder")
            lm_vectors = self.lm_embedder.encode(texts, show_progress=self.show_progress)
        return model.score(self.embedder.encode(texts), [row["task"] for row in rows], texts, lm_vectors)

    def run(self, rows: list[Row]) -> StageResult:
        result = StageResult()
        candidates = rows
        if self.prefilter is not None:
            fast, cut = self.prefilter
            candidates = self._keep(rows, fast, cut, "low_quality_prefilter", result)
        cut = self.model.threshold if self.threshold is None else self.threshold
        result.kept = self._keep(candidates, self.model, cut, "low_quality", result)
        return result

    def _keep(self, rows: list[Row], model: QualityModel, cut: float, reason: str, result: StageResult) -> list[Row]:
        """The rows ``model`` scores at ``cut`` or above (and the seeds), in order; the rest dropped as ``reason``.
        Every row gets its score in ``quality``."""
        kept = []
        for row, score in zip(rows, self.scores(rows, model), strict=True):
            row["quality"] = round(float(score), 4)
            if row.get("source") == "seed" or score >= cut:
                kept.append(row)
            else:
                result.drop(row, reason)
        return kept


NONE = "none"


def fit_quality_model(
    vectors: np.ndarray,
    texts: list[str],
    classes: list[str],
    labels: list[str],
    passes_rules: np.ndarray,
    written: tuple[np.ndarray, list[str], list[str]],
    encoder: str,
    lm: tuple[str, np.ndarray, np.ndarray] | None = None,
    target_precision: float = 0.92,
    written_weight: float = 0.3,
    cs: tuple[float, ...] = (0.01, 0.03, 0.1),
    scales: dict[str, float] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> tuple[QualityModel, dict[str, Any]]:
    """Fit the quality model on hand-labelled generated rows plus hand-written requests; choose C and the
    threshold by cross-validation on the labelled rows only.

    ``classes`` holds each labelled row's true class (a task, or ``NONE``) and ``labels`` the task it was
    generated for; ``written`` is (vectors, texts, tasks) of hand-written requests (seeds, templates), added to
    every fold's training rows at ``written_weight``; ``lm`` is (lm encoder name, the labelled rows' LM vectors,
    the written rows' LM vectors) for a model that reads them. The threshold is the lowest whose out-of-fold
    precision on the rows that pass the quality rules reaches ``target_precision``: those are the rows the stage
    sees. The returned record also holds the chosen C's ``out_of_fold`` scores (not stored in the model).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    order = (*task_names(), NONE)
    w_vectors, w_texts, w_tasks = written
    signals = text_signals(texts)
    standardise = {"signals": (signals.mean(0), signals.std(0) + 1e-6)}
    scales = dict(scales or {"embedding": 10.0, "signals": 0.3, "lm": 0.3})
    lm_name, lm_rows, lm_written = lm if lm else (None, None, None)
    if lm_rows is not None:
        standardise["lm"] = (lm_rows.mean(0), lm_rows.std(0) + 1e-6)
    else:
        scales.pop("lm", None)
    shell = QualityModel(order, encoder, lm_name, scales, standardise, np.zeros(1), np.zeros(1), 0.5)
    x = shell.features(vectors, texts, lm_rows)
    wx = shell.features(w_vectors, w_texts, lm_written)
    y = np.array([order.index(c) for c in classes])
    wy = np.array([order.index(t) for t in w_tasks])
    own = np.array([order.index(label) for label in labels])
    right = (y == own).astype(int)

    def fit(rows: np.ndarray, c: float) -> LogisticRegression:
        weights = np.r_[np.ones(len(rows)), np.full(len(wy), written_weight)]
        return LogisticRegression(C=c, max_iter=5000).fit(np.r_[x[rows], wx], np.r_[y[rows], wy], sample_weight=weights)

    def own_probability(model: LogisticRegression, rows: np.ndarray) -> np.ndarray:
        probabilities = np.zeros((len(rows), len(order)))
        probabilities[:, model.classes_] = model.predict_proba(x[rows])
        return probabilities[np.arange(len(rows)), own[rows]]

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out_of_fold = {}
    for c in cs:
        scores = np.zeros(len(y))
        for train, held in splitter.split(x, right):
            scores[held] = own_probability(fit(train, c), held)
        out_of_fold[c] = scores
    auc = {c: roc_auc_score(right, s) for c, s in out_of_fold.items()}
    best_c = max(auc, key=auc.get)
    seen = np.asarray(passes_rules, dtype=bool)
    threshold, at = choose_threshold(out_of_fold[best_c][seen], right[seen], target_precision)
    final = fit(np.arange(len(y)), best_c)
    weight = np.zeros((len(order), x.shape[1]), dtype=np.float32)
    bias = np.full(len(order), -30.0, dtype=np.float32)
    weight[final.classes_] = final.coef_
    bias[final.classes_] = final.intercept_
    record = {
        "roc_auc_by_c": {repr(c): round(float(a), 4) for c, a in auc.items()},
        "c": best_c,
        "scales": scales,
        "written_weight": written_weight,
        "threshold": round(threshold, 4),
        "target_precision": target_precision,
        "rows": len(y),
        "right": int(right.sum()),
        "rows_passing_rules": int(seen.sum()),
        **at,
    }
    model = QualityModel(order, encoder, lm_name, scales, standardise, weight, bias, threshold, {"cv": dict(record)})
    record["out_of_fold"] = out_of_fold[best_c].round(4)
    return model, record


def choose_threshold(scores: np.ndarray, targets: np.ndarray, target_precision: float) -> tuple[float, dict]:
    """The lowest score cut whose kept rows reach ``target_precision``, with that cut's precision and recall."""
    order = np.argsort(-scores)
    hits = np.cumsum(targets[order])
    precision = hits / np.arange(1, len(order) + 1)
    reaching = np.flatnonzero(precision >= target_precision)
    if len(reaching) == 0:
        raise ValueError(f"no threshold reaches precision {target_precision}; label more rows or lower the target")
    last = int(reaching[-1])
    threshold = float(scores[order[last]])
    kept = scores >= threshold
    return threshold, {
        "cv_precision": round(float(targets[kept].mean()), 4),
        "cv_recall": round(float(targets[kept].sum() / max(targets.sum(), 1)), 4),
        "cv_kept_share": round(float(kept.mean()), 4),
    }
