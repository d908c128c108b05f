"""A Gradio web demo: upload a photo (or pick an example), type a request, see the restoration beside it.

``build_demo`` returns the app for a loaded :class:`~instructir.model.restore.Restorer`; ``restore_request`` is
the function its Restore button calls, usable and testable without a browser. Large photos go through the
restorer's tiled path, so memory stays bounded. Gradio is an optional dependency (``instructir[demo]``) and is
imported only when the app is built; it runs offline with analytics off.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from instructir.datasets.images import ImageError, encode_png, load_image, to_uint8
from instructir.io import write_bytes

if TYPE_CHECKING:
    import gradio as gr

    from instructir.model.restore import Restorer

# Longest side of the example photos written for the demo.
EXAMPLE_SIDE = 320
# How long a restored result stays on disk for its download button.
RESULTS_KEPT_SECONDS = 3600.0


class DemoError(ValueError):
    """A request the demo cannot serve (no image, no request, an unreadable file), with a message for the user."""


def cache_folder() -> Path:
    """The folder for example photos and results: a fixed place under the system temp folder (Gradio serves it)."""
    return Path(tempfile.gettempdir()) / "instructir-demo"


def example_inputs(folder: str | Path, seed: int = 0, tasks: Sequence[str] | None = None) -> list[tuple[Path, str]]:
    """Degraded small copies of the bundled sample photos, as (PNG path, request) pairs; written once, then reused.

    Each registered task that has a degradation (of those in ``tasks``, the model's own, when given) shows it on
    a different photo, with the task's first hand-written request, so the examples cover what the model can do.
    """
    from instructir.datasets.instructions import InstructionPool
    from instructir.datasets.sources import sample_images
    from instructir.datasets.synthesis import make_sample, restoration_tasks
    from instructir.tasks import all_tasks

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pool = InstructionPool.from_corpus()
    degradable = restoration_tasks(all_tasks())
    shown = [task for task in degradable if tasks is None or task.name in tasks]
    examples = []
    for task, ref in zip(shown, sample_images(), strict=False):
        index = degradable.index(task)
        path = folder / f"{ref.name.split('/')[-1]}-{task.name}.png"
        if not path.is_file():
            try:
                clean = _shrink(ref.load(), EXAMPLE_SIDE)
            except ImageError:
                continue
            sample = make_sample(clean, task, pool, np.random.default_rng([seed, index]), degradable)
            write_bytes(encode_png(sample.degraded), path)
        examples.append((path, task.seeds[0]))
    return examples


def restore_request(
    restorer: Restorer,
    image_path: str | Path | None,
    request: str | None,
    out: str | Path,
    keep_seconds: float = RESULTS_KEPT_SECONDS,
) -> tuple[str, dict[str, float], str]:
    """Restore the image at ``image_path`` as ``request`` asks; returns (result PNG, {intent: confidence}, PNG).

    The result is written under ``out`` as NAME-TASK.png in a folder of its own; results older than
    ``keep_seconds`` are deleted first, so a long-running demo does not fill the disk. Raises :class:`DemoError`
    with a message for the user when there is no image, no request, or the file cannot be read.
    """
    if image_path is None or not str(image_path).strip():
        raise DemoError("Upload an image or pick an example first.")
    text = (request or "").strip()
    if not text:
        raise DemoError('Type what to do with the image, e.g. "remove the noise".')
    try:
        image = load_image(image_path)
    except ImageError as error:
        raise DemoError(f"Cannot read the image: {error}") from error
    task, confidence = restorer.intent(text)
    restored = restorer.restore(image, text)
    prune_results(out, keep_seconds)
    folder = Path(out) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    result = folder / f"{Path(image_path).stem}-{task}.png"
    write_bytes(encode_png(restored), result)
    return str(result), {task: confidence}, str(result)


def prune_results(out: str | Path, keep_seconds: float, now: float | None = None) -> int:
    """Delete the result folders under ``out`` last written more than ``keep_seconds`` ago; returns how many."""
    out = Path(out)
    cutoff = (time.time() if now is None else now) - keep_seconds
    removed = 0
    for folder in out.iterdir() if out.is_dir() else []:
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def build_demo(restorer: Restorer, examples: Sequence[tuple[str | Path, str]] = ()) -> gr.Blocks:
    """The demo app: input and result side by side, a request box, the detected intent and a download button.

    ``examples`` are (image path, request) pairs. Requests are served one at a time (Gradio's queue).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    results = cache_folder() / "results"

    def on_restore(image_path: str | None, request: str | None) -> tuple[str, dict[str, float], str]:
        try:
            return restore_request(restorer, image_path, request, results)
        except DemoError as error:
            raise gr.Error(str(error)) from None

    cleanup = (int(RESULTS_KEPT_SECONDS), int(RESULTS_KEPT_SECONDS))  # Gradio's own copies of served files
    with gr.Blocks(title="InstructIR demo", analytics_enabled=False, delete_cache=cleanup) as demo:
        gr.Markdown(
            "# InstructIR: restore a photo by asking\n"
            "Upload a photo or pick an example, say what is wrong with it in plain words, and press **Restore**."
        )
        with gr.Row(equal_height=True):
            source = gr.Image(
                label="Input", type="filepath", image_mode=None, sources=["upload", "clipboard"], elem_id="source"
            )
            result = gr.Image(label="Restored", type="filepath", format="png", interactive=False, elem_id="result")
        with gr.Row():
            request = gr.Textbox(
                label="Request", placeholder="e.g. remove the noise", lines=1, scale=3, elem_id="request"
            )
            button = gr.Button("Restore", variant="primary", scale=1, elem_id="restore")
        with gr.Row():
            intent = gr.Label(label="Detected intent", elem_id="intent")
            download = gr.DownloadButton("Download PNG", value=None, elem_id="download")
        if examples:
            gr.Examples(
                examples=[[str(path), text] for path, text in examples],
                inputs=[source, request],
                label="Examples (degraded sample photos)",
            )
        outputs = [result, intent, download]
        button.click(on_restore, inputs=[source, request], outputs=outputs, api_name="restore")
        request.submit(on_restore, inputs=[source, request], outputs=outputs, api_name=False)
    return demo


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    """The image scaled down (area filter) so its longest side is at most ``side``, in float32 [0, 1]."""
    from PIL import Image

    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(16, round(width * scale)), max(16, round(height * scale)))
    pixels = Image.fromarray(to_uint8(image)).resize(size, Image.BOX)
    return np.asarray(pixels, dtype=np.float32) / 255.0
