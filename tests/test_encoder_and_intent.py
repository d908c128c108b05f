"""A model trained with a non-default sentence encoder restores with it unasked; the intent cross-entropy learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_MODEL, run_cli

from instructir.datasets.build import BuildConfig, build_dataset, load_built
from instructir.datasets.images import encode_png, load_image
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import sample_images
from instructir.demo import restore_request
from instructir.io import write_bytes
from instructir.model import InstructIR, TextHead, load_checkpoint
from instructir.model.restore import Restorer
from instructir.model.train import TrainConfig, train
from instructir.prompts.embed import Embedder
from instructir.tasks import all_tasks, get_task

TASKS = ("denoise", "deblur", "lowlight")
TINY = ["--width", "8", "--enc-blks", "1,1", "--middle-blks", "1", "--dec-blks", "1,1"]
# The tiny encoder's output size: not all-MiniLM-L6-v2's 384, so a head fed by the wrong encoder cannot run.
TINY_DIM = 48


@pytest.fixture(scope="module")
def three_tasks(tmp_path_factory) -> Path:
    """Noisy, blurred and dark 32 px crops of the wheel photos, with one photo held out as the test split."""
    out = tmp_path_factory.mktemp("data") / "three"
    config = BuildConfig(tasks=TASKS, per_image=2, patch=32, seed=0, validation_fraction=0.0, test_fraction=0.1)
    build_dataset(out, InstructionPool.from_corpus(), sample_images(), config=config)
    return out


def tiny_encoder(folder: Path, dim: int = TINY_DIM) -> Path:
    """Save a random one-layer BERT (WordPiece vocabulary down to single letters) plus mean pooling, offline."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    try:  # sentence-transformers >= 6; `models` (its old place) warns there
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    words = ["remove", "the", "noise", "grain", "blur", "sharp", "dark", "bright", "light", "photo", "please"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters, *(f"##{char}" for char in letters)]
    tokenizer = Tokenizer(WordPiece({token: index for index, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    special = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    raw = folder.parent / f"{folder.name}-transformer"
    torch.manual_seed(0)
    bert = BertConfig(
        vocab_size=len(vocab), hidden_size=dim, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(bert).save_pretrained(raw)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, mask_token="[MASK]", **special).save_pretrained(raw)
    modules = [Transformer(str(raw), max_seq_length=64), Pooling(dim, pooling_mode="mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


def write_photo(path: Path) -> np.ndarray:
    """Write a 40x56 crop of a real photo as PNG and return it as read back."""
    image = next(ref for ref in sample_images() if ref.name.endswith("astronaut")).load()
    write_bytes(encode_png(np.ascontiguousarray(image[100:140, 150:206])), path)
    return load_image(path)


@pytest.mark.slow
def test_restore_eval_and_demo_use_the_non_default_encoder_the_checkpoint_was_trained_with(
    three_tasks, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("INSTRUCTIR_CACHE", str(cache))  # also the CLI subprocesses' embedding cache
    encoder = tiny_encoder(tmp_path / "encoder")
    run = tmp_path / "run"
    args = ["--data", str(three_tasks), "--out", str(run), "--steps", "4", "--batch", "4", "--patch", "16"]
    done = run_cli("train", *args, "--warmup", "1", "--checkpoint-every", "4", *TINY, "--encoder", str(encoder))
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = run / "final.safetensors"
    _, head, saved = load_checkpoint(checkpoint)
    assert saved["config"]["encoder"] == str(encoder), "the checkpoint records the encoder it was trained with"
    assert head.config["in_dim"] == TINY_DIM, "the text head reads the encoder's vectors, whatever their size"

    photo = write_photo(tmp_path / "photo.png")
    request = "please get the grain out of this picture, it was shot at night"
    source, restored = tmp_path / "photo.png", tmp_path / "restored.png"
    done = run_cli("restore", str(source), request, "-o", str(restored), "--checkpoint", str(checkpoint))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "intent: " in done.stdout and load_image(restored).shape == photo.shape
    embedder = Embedder(str(encoder))
    embedder.encode([request])
    assert embedder.computed == 0, "restore encoded the request with the checkpoint's encoder (it is in its cache)"
    embedder.close()
    assert [path.name for path in cache.glob("*.sqlite")] == [embedder.cache_path.name], "no other encoder ran"

    report = tmp_path / "eval.json"
    done = run_cli("eval", "--checkpoint", str(checkpoint), "--data", str(three_tasks), "--json", str(report))
    assert done.returncode == 0, done.stderr[-3000:]
    overall = json.loads(report.read_text())["dataset"]["overall"]
    assert overall["count"] == len(load_built(str(three_tasks), "test")) > 0
    assert overall["intent_rows"] == overall["count"] and overall["intent_accuracy"] is not None

    restorer = Restorer.from_checkpoint(checkpoint, device="cpu")
    assert restorer.encoder.embedder.model_name == str(encoder)
    result, intent, download = restore_request(restorer, source, "brighten it up", tmp_path / "demo")
    assert result == download and load_image(result).shape == photo.shape
    ((task, confidence),) = intent.items()
    assert task in {known.name for known in all_tasks()} and 0 < confidence <= 1
    assert [path.name for path in cache.glob("*.sqlite")] == [embedder.cache_path.name]


def intent_accuracy(head: TextHead, vectors: torch.Tensor, tasks: list[str]) -> float:
    """Share of sentence vectors whose likeliest intent class is the labelled task."""
    with torch.no_grad():
        predicted = head(vectors)[1].argmax(dim=-1).tolist()
    return float(np.mean([get_task(index).name == task for index, task in zip(predicted, tasks, strict=True)]))


@pytest.mark.slow
def test_the_intent_cross_entropy_teaches_the_head_to_read_unseen_real_requests(three_tasks, tmp_path):
    config = TrainConfig(
        data=str(three_tasks),
        out=str(tmp_path / "run"),
        steps=40,
        batch=8,
        patch=16,
        lr=5e-3,
        warmup=5,
        text_weight=2.0,
        checkpoint_every=40,
        width=TINY_MODEL["width"],
        enc_blks=TINY_MODEL["enc_blks"],
        middle_blk_num=TINY_MODEL["middle_blk_num"],
        dec_blks=TINY_MODEL["dec_blks"],
    )
    train(config, show_progress=False)

    with (REPO / "tests/data/real_requests.jsonl").open() as handle:
        real = [row for row in map(json.loads, handle) if row["task"] in TASKS]
    texts, tasks = [row["text"] for row in real], [row["task"] for row in real]
    assert len(real) == 60 and set(texts).isdisjoint(load_built(str(three_tasks), "train")["instruction"])
    embedder = Embedder(config.encoder)
    vectors = torch.from_numpy(embedder.encode(texts))
    embedder.close()

    torch.manual_seed(config.seed)  # the head train() starts from: drawn right after the image model
    InstructIR(**config.model_kwargs())
    untrained = intent_accuracy(TextHead(in_dim=vectors.shape[1], num_classes=len(all_tasks())), vectors, tasks)
    _, trained_head, _ = load_checkpoint(tmp_path / "run" / "final.safetensors")
    trained = intent_accuracy(trained_head, vectors, tasks)
    assert untrained <= 0.6 < trained, f"accuracy on unseen requests: {untrained:.2f} at init, {trained:.2f} trained"
