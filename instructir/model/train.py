"""Train InstructIR on a built dataset: L1 + lambda * intent cross-entropy, AdamW, warm-up + cosine, EMA weights.

One loop on accelerate that reads top to bottom. The data order is a pure function of (seed, step): sample k of
the run is row ``permutation(seed, epoch)[k mod N]`` with its crop and flip drawn from (seed, epoch, row), so
``--resume`` continues at the same step with the same data on any number of workers, and a killed-then-resumed
run reaches the same weights as an uninterrupted one (CPU, same seed). Under ``accelerate launch`` each rank
takes its slice of every global batch. Instructions are embedded once (cached on disk by the Embedder); the
sentence encoder never runs inside the loop. Checkpoints are folders written under a temporary name and renamed:
``model.safetensors`` (model + head), ``ema.safetensors`` and ``training_state.pt`` (optimizer, scheduler, RNG).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from instructir.datasets.augment import augment_clean
from instructir.datasets.build import load_built
from instructir.datasets.images import ImageError, random_crop, rgb_array
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.synthesis import make_sample, restoration_tasks
from instructir.model.checkpoint import load_checkpoint, save_checkpoint
from instructir.model.instructir import InstructIR
from instructir.model.shipped import init_checkpoint
from instructir.model.text import TextHead
from instructir.prompts.embed import DEFAULT_ENCODER, Embedder
from instructir.tasks import all_tasks, get_task


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, unusable data); the message says what to do."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run. Model sizes default to the paper's configuration."""

    data: str
    out: str
    steps: int = 1000
    batch: int = 8
    patch: int = 128
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup: int = 50
    text_weight: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    width: int = 32
    enc_blks: tuple[int, ...] = (2, 2, 4, 8)
    middle_blk_num: int = 4
    dec_blks: tuple[int, ...] = (2, 2, 2, 2)
    encoder: str = DEFAULT_ENCODER
    on_the_fly: bool = False
    corpus: str = "instructir-requests"
    workers: int = 0
    compile: bool = False
    augment: bool = False
    init: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError naming each bad parameter."""
        checks = {
            "steps must be >= 1": self.steps >= 1,
            "batch must be >= 1": self.batch >= 1,
            "patch must be a multiple of 16 >= 16": self.patch >= 16 and self.patch % 16 == 0,
            "lr must be > 0": self.lr > 0,
            "text_weight must be >= 0": self.text_weight >= 0,
            "ema_decay must be in [0, 1)": 0 <= self.ema_decay < 1,
            "checkpoint_every must be >= 1": self.checkpoint_every >= 1,
            "enc_blks and dec_blks must have the same length": len(self.enc_blks) == len(self.dec_blks),
            "augment needs on_the_fly (a built pair's damage cannot follow a changed clean crop)": (
                self.on_the_fly or not self.augment
            ),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ValueError("; ".join(problems))

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "enc_blks": tuple(self.enc_blks),
            "middle_blk_num": self.middle_blk_num,
            "dec_blks": tuple(self.dec_blks),
        }


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine down to min_lr / lr at the last step."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    span = max(config.steps - config.warmup, 1)
    progress = min((step - config.warmup) / span, 1.0)
    floor = config.min_lr / config.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class PairStream(Dataset):
    """Item k of a rank is global sample ``(k // local) * global + rank * local + k % local`` of the run."""

    def __init__(
        self,
        split,
        config: TrainConfig,
        vectors: dict[str, np.ndarray],
        local_batch: int,
        rank: int,
        pool: InstructionPool | None = None,
    ):
        self.split = split
        self.config = config
        self.vectors = vectors
        self.local_batch = local_batch
        self.rank = rank
        self.rows = len(split)
        self.pool = pool
        self.degradable = restoration_tasks(all_tasks())
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.config.steps * self.local_batch

    def position(self, k: int) -> tuple[int, int]:
        """(epoch, row) of this rank's item ``k``."""
        step, slot = divmod(k, self.local_batch)
        sample = step * self.config.batch + self.rank * self.local_batch + slot
        epoch, offset = divmod(sample, self.rows)
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.config.seed, epoch]).permutation(self.rows)}
        return epoch, int(self._orders[epoch][offset])

    def __getitem__(self, k: int) -> dict[str, Any]:
        epoch, row_index = self.position(k)
        row = self.split[row_index]
        rng = np.random.default_rng([self.config.seed, epoch, row_index])
        clean = rgb_array(row["clean"])
        task = get_task(row["task"])
        if self.pool is not None:
            crop = _crop(clean, self.config.patch, rng)
            if self.config.augment:
                crop = augment_clean(crop, rng)
            sample = make_sample(crop, task, self.pool, rng, self.degradable)
            clean, degraded, instruction = sample.clean, sample.degraded, sample.instruction
        else:
            degraded = rgb_array(row["degraded"])
            both = _crop(np.concatenate([clean, degraded], axis=2), self.config.patch, rng)
            clean, degraded, instruction = both[..., :3], both[..., 3:], row["instruction"]
        if rng.random() < 0.5:
            clean, degraded = clean[:, ::-1], degraded[:, ::-1]
        return {
            "clean": torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1))),
            "degraded": torch.from_numpy(np.ascontiguousarray(degraded.transpose(2, 0, 1))),
            "embedding": torch.from_numpy(self.vectors[instruction]),
            "task": task.id,
        }


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``random_crop``, with the error a training run gives when its data are smaller than --patch."""
    try:
        return random_crop(image, size, rng)
    except ImageError:
        height, width = image.shape[:2]
        raise TrainingError(
            f"a training image is {width}x{height}, smaller than --patch {size}; lower --patch or rebuild the "
            "dataset with a larger --patch"
        ) from None


def embed_instructions(texts: list[str], encoder: str) -> dict[str, np.ndarray]:
    """Unit vectors of every distinct instruction, computed once (and cached on disk across runs)."""
    unique = sorted(set(texts))
    embedder = Embedder(encoder)
    vectors = embedder.encode(unique)
    embedder.close()
    return dict(zip(unique, vectors, strict=True))


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    folders = sorted((out / "checkpoints").glob("step-*"))
    complete = [folder for folder in folders if (folder / "training_state.pt").is_file()]
    return complete[-1] if complete else None


def train(
    config: TrainConfig,
    resume: bool = False,
    show_progress: bool = True,
    status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) training and return the final metrics; writes checkpoints and logs under ``config.out``."""
    from accelerate import Accelerator

    config.validate()
    out = Path(config.out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if cuda else "no", cpu=not cuda)
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch % world:
        raise ValueError(f"--batch {config.batch} must be divisible by the number of processes ({world})")
    local_batch = config.batch // world
    train_split = load_built(config.data, "train")
    texts = list(train_split["instruction"])
    trained_ids = set(train_split["task"])
    inherited = _fine_tuned_tasks(config.init)
    trained_tasks = [task.name for task in all_tasks() if task.id in trained_ids or task.name in inherited]
    pool = InstructionPool.from_corpus(config.corpus) if config.on_the_fly else None
    if pool is not None:
        texts += [text for group in pool.by_task.values() for text in group]
    vectors = embed_instructions(texts, config.encoder)

    # The head reads the encoder's vectors: their size is the encoder's (384 for the default), not a constant.
    head_kwargs = {"in_dim": len(next(iter(vectors.values()))), "num_classes": len(all_tasks())}
    torch.manual_seed(config.seed)
    model = InstructIR(**config.model_kwargs())
    head = TextHead(**head_kwargs)
    ema_model, ema_head = InstructIR(**config.model_kwargs()), TextHead(**head_kwargs)
    ema_model.load_state_dict(model.state_dict())
    ema_head.load_state_dict(head.state_dict())
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    parameters = [*model.parameters(), *head.parameters()]
    # On CUDA the fused AdamW updates every parameter in one kernel instead of a few per tensor.
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, betas=(0.9, 0.99), weight_decay=0.0, fused=cuda or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    start = 0
    if resume and (checkpoint := latest_checkpoint(out)) is not None:
        start = _restore(checkpoint, model, head, ema_model, ema_head, optimizer, scheduler)
    elif config.init:
        _start_from(init_checkpoint(config.init), model, head, ema_model, ema_head)
    model, head, optimizer = accelerator.prepare(model, head, optimizer)
    ema_model.to(accelerator.device)
    ema_head.to(accelerator.device)
    forward = torch.compile(model) if config.compile else model

    stream = PairStream(train_split, config, vectors, local_batch, rank, pool)
    indices = range(start * local_batch, config.steps * local_batch)
    loader = DataLoader(
        torch.utils.data.Subset(stream, indices),
        batch_size=local_batch,
        num_workers=config.workers,
        pin_memory=cuda,
        persistent_workers=config.workers > 0,
    )
    out.mkdir(parents=True, exist_ok=True)
    log = _CsvLog(out / "log.csv", keep_until=start)
    writer = _tensorboard(out / "tensorboard") if accelerator.is_main_process else None
    _write_config(out, config)
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, desc="training", disable=not (show_progress and rank == 0))
    seen, clock, step = 0, time.monotonic(), start
    heartbeat = StatusLines(status, start, config.steps, config.batch)
    watch = DivergenceWatch(accelerator.device)
    for batch in loader:
        degraded = batch["degraded"].to(accelerator.device, non_blocking=True)
        clean = batch["clean"].to(accelerator.device, non_blocking=True)
        if cuda:
            degraded = degraded.contiguous(memory_format=torch.channels_last)
        with accelerator.autocast():
            embedding, logits = head(batch["embedding"].to(accelerator.device))
            restored = forward(degraded, embedding)
            l1 = (restored.float() - clean).abs().mean()
            ce = F.cross_entropy(logits.float(), batch["task"].to(accelerator.device))
            loss = l1 + config.text_weight * ce
        watch.update(step, loss, l1, ce)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        scheduler.step()
        decay = ema_decay(step, config.ema_decay)
        _ema_update(ema_model, accelerator.unwrap_model(model), decay)
        _ema_update(ema_head, accelerator.unwrap_model(head), decay)
        step += 1
        seen += clean.shape[0] * world
        bar.update()
        heartbeat.update(step, l1)
        logging = step % config.log_every == 0 or step == config.steps
        checkpointing = step % config.checkpoint_every == 0 or step == config.steps
        if logging or checkpointing:
            watch.check(out)
        if logging:
            rate = seen / max(time.monotonic() - clock, 1e-9)
            record = {"step": step, "loss": loss.item(), "l1": l1.item(), "ce": ce.item()}
            record |= {"lr": scheduler.get_last_lr()[0], "images_per_second": rate}
            if accelerator.is_main_process:
                log.write(record)
                if writer is not None:
                    for key, value in record.items():
                        if key != "step":
                            writer.add_scalar(f"train/{key}", value, step)
            bar.set_postfix(l1=f"{l1.item():.4f}", ce=f"{ce.item():.3f}")
            seen, clock = 0, time.monotonic()
        if checkpointing and accelerator.is_main_process:
            live = (accelerator.unwrap_model(model), accelerator.unwrap_model(head))
            _checkpoint(out, step, config, live, (ema_model, ema_head), optimizer, scheduler, trained_tasks)
        accelerator.wait_for_everyone()
    bar.close()
    if writer is not None:
        writer.close()
    final = out / "final.safetensors"
    if accelerator.is_main_process:
        source = latest_checkpoint(out)
        if source is not None:
            shutil.copyfile(source / "ema.safetensors", final)
    return {"steps": config.steps, "final": str(final), "log": str(out / "log.csv")}


class StatusLines:
    """A plain line (step, L1, images/s, ETA) at most every ``every`` seconds, for logs where no bar shows.

    The L1 is read back from the device only when a line is due, so the other steps never wait for it.
    """

    def __init__(
        self, write: Callable[[str], None] | None, start: int, total: int, batch: int, every: float = 30.0
    ) -> None:
        self.write, self.start, self.total, self.batch, self.every = write, start, total, batch, every
        self.began = self.last = time.monotonic()

    def update(self, step: int, l1: torch.Tensor) -> None:
        """Write a line if one is due (or this is the last step)."""
        now = time.monotonic()
        if self.write is None or (now - self.last < self.every and step < self.total):
            return
        self.last = now
        self.write(status_line(step, self.total, float(l1.detach()), step - self.start, now - self.began, self.batch))


def status_line(step: int, total: int, l1: float, steps_done: int, seconds: float, batch: int) -> str:
    """``train: step 120/3000 (4%), L1 0.0412, 12.4 images/s, ETA 15m29s`` from the steps done in ``seconds``."""
    rate = steps_done / seconds if seconds > 0 else 0.0
    left = (total - step) / rate if rate > 0 else float("inf")
    eta = "?" if math.isinf(left) else f"{int(left // 60)}m{int(left % 60):02d}s"
    return f"train: step {step}/{total} ({step / total:.0%}), L1 {l1:.4f}, {rate * batch:.1f} images/s, ETA {eta}"


def print_status(text: str) -> None:
    """Write a status line to stderr at once (where progress bars go when stderr is a terminal)."""
    print(text, file=sys.stderr, flush=True)


class DivergenceWatch:
    """Remembers, on the device, the first step whose loss was NaN or infinite.

    Checked only where the loop reads values back anyway (logging, checkpoints), so a healthy step never makes the
    host wait for the GPU; a check runs before every checkpoint, so none holds diverged weights.
    """

    def __init__(self, device: torch.device) -> None:
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.terms = torch.zeros(3, device=device)

    def update(self, step: int, loss: torch.Tensor, l1: torch.Tensor, ce: torch.Tensor) -> None:
        """Record ``step`` and its loss terms if the loss is not finite and no earlier step was."""
        terms = torch.stack([loss.detach(), l1.detach(), ce.detach()]).float()
        new = (self.first < 0) & ~torch.isfinite(terms[0])
        self.first = torch.where(new, step, self.first)
        self.terms = torch.where(new, terms, self.terms)

    def check(self, out: Path) -> None:
        """Raise TrainingError naming the first diverged step and the last good checkpoint, if there was one."""
        first = int(self.first)
        if first >= 0:
            loss, l1, ce = self.terms.tolist()
            last = latest_checkpoint(out)
            raise TrainingError(
                f"the loss became {loss} at step {first} (L1 {l1:.4g}, CE {ce:.4g}); lower --lr or check the data. "
                f"The last good checkpoint is {last or 'none'}; fix and rerun with --resume."
            )


def ema_decay(step: int, decay: float) -> float:
    """EMA decay at ``step``, warmed up as (1 + step) / (10 + step) so short runs are not stuck at the init."""
    return min(decay, (1 + step) / (10 + step))


def _ema_update(ema: torch.nn.Module, live: torch.nn.Module, decay: float) -> None:
    """ema += (1 - decay) * (live - ema) for every floating tensor, as one multi-tensor lerp (one kernel on CUDA)."""
    with torch.no_grad():
        pairs = list(zip(ema.state_dict().values(), live.state_dict().values(), strict=True))
        floating = [(mine, theirs.detach()) for mine, theirs in pairs if mine.dtype.is_floating_point]
        if floating:
            torch._foreach_lerp_([mine for mine, _ in floating], [theirs for _, theirs in floating], 1 - decay)
        for mine, theirs in pairs:
            if not mine.dtype.is_floating_point:
                mine.copy_(theirs)


def _folder(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:07d}"


def _checkpoint(out: Path, step: int, config: TrainConfig, live, ema, optimizer, scheduler, tasks) -> None:
    """Write the live weights, the EMA weights and the training state into a folder that appears complete.

    ``tasks`` (the train split's task names) goes into each file's extra, so a restorer knows what it was taught.
    """
    staging = out / "checkpoints" / f".staging-{step:07d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    meta = _jsonable(config)
    save_checkpoint(staging / "model.safetensors", *live, config=meta, extra={"step": step, "tasks": tasks})
    save_checkpoint(staging / "ema.safetensors", *ema, config=meta, extra={"step": step, "ema": True, "tasks": tasks})
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, staging / "training_state.pt")
    target = _folder(out, step)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _restore(checkpoint: Path, model, head, ema_model, ema_head, optimizer, scheduler) -> int:
    live_model, live_head, _ = load_checkpoint(checkpoint / "model.safetensors")
    ema_live, ema_live_head, _ = load_checkpoint(checkpoint / "ema.safetensors")
    model.load_state_dict(live_model.state_dict())
    head.load_state_dict(live_head.state_dict())
    ema_model.load_state_dict(ema_live.state_dict())
    ema_head.load_state_dict(ema_live_head.state_dict())
    state = torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _fine_tuned_tasks(init: str | None) -> set[str]:
    """The tasks the checkpoint a run fine-tunes was taught (none from scratch): its weights still know them."""
    path = init_checkpoint(init) if init else None
    if path is None or not path.is_file():
        return set()  # from scratch, or a missing file that _start_from reports
    _, _, saved = load_checkpoint(path)
    return set(saved.get("extra", {}).get("tasks") or [])


def _start_from(path: Path, model, head, ema_model, ema_head) -> None:
    """Fine-tune: copy the weights of a trained checkpoint into the live and EMA networks before step 0."""
    if not path.is_file():
        raise FileNotFoundError(f"--init {path}: no such checkpoint; give a .safetensors file from `instructir train`")
    trained, trained_head, _ = load_checkpoint(path)
    for name, mine, theirs in (("network", model, trained), ("text head", head, trained_head)):
        if theirs is None:
            raise TrainingError(f"--init {path} holds no {name}; give a checkpoint from `instructir train`")
        shapes = {key: tuple(value.shape) for key, value in theirs.state_dict().items()}
        if shapes != {key: tuple(value.shape) for key, value in mine.state_dict().items()}:
            raise TrainingError(
                f"--init {path}: its {name} has another architecture than this run's; give this run the "
                "checkpoint's --width, --enc-blks, --middle-blks, --dec-blks and --encoder"
            )
        mine.load_state_dict(theirs.state_dict())
    ema_model.load_state_dict(model.state_dict())
    ema_head.load_state_dict(head.state_dict())


def _jsonable(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=list))


def _write_config(out: Path, config: TrainConfig) -> None:
    (out / "config.json").write_text(json.dumps(_jsonable(config), indent=2, sort_keys=True) + "\n")


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class _CsvLog:
    """log.csv, appended per logged step; on resume, rows past the resumed step are dropped first."""

    FIELDS = ("step", "loss", "l1", "ce", "lr", "images_per_second")

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        kept = []
        if path.is_file() and keep_until:
            with path.open() as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= keep_until]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(kept)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.FIELDS).writerow(record)
