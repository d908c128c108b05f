"""The web demo: its restore callback and error paths, the CLI's refusals, and a real browser session end to end."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli_env, save_tiny_checkpoint
from PIL import Image
from typer.testing import CliRunner

from instructir.cli import app
from instructir.datasets.images import encode_png, load_image
from instructir.datasets.sources import sample_images
from instructir.demo import DemoError, build_demo, example_inputs, restore_request
from instructir.model.restore import Restorer
from instructir.tasks import task_names

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUEST = "Remove the noise from this photo."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random model and text head: restores nothing well, but runs every code path in a second."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "final.safetensors")


@pytest.fixture(scope="module")
def restorer(checkpoint) -> Restorer:
    return Restorer.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 200x150 crop of a sample photo (odd sizes: the model pads to multiples of 16 and crops back)."""
    image = next(ref for ref in sample_images() if ref.name.endswith("astronaut")).load()
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    path.write_bytes(encode_png(image[100:250, 150:350]))
    return path


def test_the_restore_callback_writes_a_png_of_the_input_size_and_reports_the_intent(restorer, photo, tmp_path):
    result, intent, download = restore_request(restorer, str(photo), f"  {REQUEST} ", tmp_path)
    assert result == download and Path(result).parent.parent == tmp_path
    assert Path(result).name.startswith("astronaut-") and result.endswith(".png")
    assert load_image(result).shape == (150, 200, 3)
    ((task, confidence),) = intent.items()
    assert task in task_names() and 0 < confidence <= 1
    assert (task, confidence) == restorer.intent(REQUEST)


def test_old_results_are_deleted_when_a_new_one_is_written_and_recent_ones_stay(restorer, photo, tmp_path):
    first, _, _ = restore_request(restorer, str(photo), REQUEST, tmp_path)
    two_hours_ago = time.time() - 7200
    os.utime(Path(first).parent, (two_hours_ago, two_hours_ago))
    second, _, _ = restore_request(restorer, str(photo), REQUEST, tmp_path)
    third, _, _ = restore_request(restorer, str(photo), REQUEST, tmp_path)
    assert not Path(first).exists() and Path(second).is_file() and Path(third).is_file()
    assert sorted(folder.name for folder in tmp_path.iterdir()) == sorted(
        Path(path).parent.name for path in (second, third)
    )


def test_a_large_upload_goes_through_the_tiled_path(restorer, tmp_path):
    big = np.random.default_rng(0).random((1040, 1100, 3), dtype=np.float32)
    path = tmp_path / "big.png"
    path.write_bytes(encode_png(big))
    result, _, _ = restore_request(restorer, path, REQUEST, tmp_path / "out")
    assert load_image(result).shape == (1040, 1100, 3)


@pytest.mark.parametrize(
    ("image", "request_text", "message"),
    [
        (None, REQUEST, "Upload an image"),
        ("", REQUEST, "Upload an image"),
        ("PHOTO", "   ", "Type what to do"),
        ("PHOTO", None, "Type what to do"),
        ("TEXT", REQUEST, "Cannot read the image"),
        ("MISSING", REQUEST, "Cannot read the image"),
    ],
)
def test_the_restore_callback_refuses_bad_input_with_a_message(restorer, photo, tmp_path, image, request_text, message):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    paths = {"PHOTO": str(photo), "TEXT": str(text_file), "MISSING": str(tmp_path / "gone.png")}
    with pytest.raises(DemoError, match=message):
        restore_request(restorer, paths.get(image, image), request_text, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_button_shows_errors_as_gradio_errors_not_tracebacks(checkpoint, photo):
    import gradio as gr

    demo = build_demo(Restorer.from_checkpoint(checkpoint, device="cpu"), [(photo, REQUEST)])
    (handler,) = [function.fn for function in demo.fns.values() if function.api_name == "restore"]
    with pytest.raises(gr.Error, match="Upload an image"):
        handler(None, REQUEST)
    result, intent, _ = handler(str(photo), REQUEST)
    assert Path(result).is_file() and len(intent) == 1


def test_examples_are_small_degraded_sample_photos_with_a_request(tmp_path):
    examples = example_inputs(tmp_path)
    assert len(examples) >= 5
    for path, request in examples:
        assert max(load_image(path).shape[:2]) <= 320 and request.strip()
    assert example_inputs(tmp_path) == examples
    known = example_inputs(tmp_path / "known", tasks=("denoise", "lowlight"))
    assert sorted(path.stem.rsplit("-", 1)[1] for path, _ in known) == ["denoise", "lowlight"], "only what it knows"


def test_the_demo_command_needs_gradio_and_a_checkpoint_that_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(app, ["demo", "--checkpoint", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2
    assert "nope.safetensors: no such checkpoint" in " ".join(missing.output.split())
    monkeypatch.setitem(sys.modules, "gradio", None)
    no_gradio = runner.invoke(app, ["demo"])
    assert no_gradio.exit_code == 2 and "pip install 'instructir[demo]'" in " ".join(no_gradio.output.split())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the demo exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the demo did not answer at {url} within {timeout} s")


def browser():
    """Headless Chromium through chromedriver; skipped locally, but a failure in CI, when they are missing."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        reason = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1000")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.mark.slow
def test_a_browser_uploads_a_photo_asks_for_a_restoration_and_gets_it_back(checkpoint, photo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "instructir", "demo", "--checkpoint", str(checkpoint), "--port", str(port)]
    env = cli_env(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_server(url, process, timeout=120)
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#source input[type=file]")))
        upload.send_keys(str(photo))
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#source img")))
        driver.find_element(By.CSS_SELECTOR, "#request textarea, #request input").send_keys(REQUEST)
        driver.find_element(By.CSS_SELECTOR, "#restore").click()
        result = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#result img")))
        wait.until(lambda _: any(name in driver.find_element(By.CSS_SELECTOR, "#intent").text for name in task_names()))
        screenshot = tmp_path / "demo.png"
        driver.save_screenshot(str(screenshot))
        if os.environ.get("INSTRUCTIR_SCREENSHOT_DIR"):
            target = Path(os.environ["INSTRUCTIR_SCREENSHOT_DIR"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, target / "demo.png")
        with urllib.request.urlopen(result.get_attribute("src"), timeout=30) as response:
            restored = Image.open(io.BytesIO(response.read()))
            assert restored.size == (200, 150) and restored.format == "PNG"
        intent = driver.find_element(By.CSS_SELECTOR, "#intent").text
        assert "%" in intent, intent
    finally:
        driver.quit()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
