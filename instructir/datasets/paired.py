"""Importers for real paired restoration sets (LOL, GoPro, SOTS, Rain100L) and the clean sets used for denoising.

Each importer takes the folder a set unpacks to, recognises its usual layouts, and returns :class:`Pairs`: a list
of :class:`PairRef` (file paths, nothing decoded) that also carries ``unmatched``, the files that had no partner,
so a caller can report them instead of losing them silently. A folder in none of the known layouts raises a
ValueError that says which layout was expected and what the folder holds.

The denoising test sets (CBSD68, Kodak24, Urban100) ship clean images only; their noisy inputs are made here with
a fixed seed per (image, sigma), so every run and every machine evaluates on the same noise. The training sets
(BSD400, WED, DIV2K) are clean images to be degraded on the fly: their refs have ``degraded=None``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np

from instructir.datasets.degradations.noise import apply_gaussian, eval_params
from instructir.datasets.images import ImageError, load_image
from instructir.datasets.sources import IMAGE_EXTENSIONS, ImageRef, folder_images
from instructir.tasks import get_task

TEST_SIGMAS = (15, 25, 50)

# What each kind's folder should look like; shown in errors.
LAYOUTS: Mapping[str, str] = MappingProxyType(
    {
        "lol": "our485/{low,high}/*.png (train) and/or eval15/{low,high}/*.png (test)",
        "gopro": "{train,test}/GOPRxxxx_xx_xx/{blur,sharp}/*.png, or {train,test}/{input,target}/*.png",
        "sots": "hazy/NNNN_A_beta.jpg with clear/NNNN.png (or gt/), or IN/ and GT/ with matching names; "
        "either directly in the folder or in its subfolders (outdoor/, indoor/)",
        "rain100l": "input/ and target/ with matching names, or rainy/rain-N.png with norain-N.png "
        "(next to rainy/, in norain/, or side by side)",
        "cbsd68": "image files anywhere under the folder (test: noisy pairs at sigma 15, 25, 50)",
        "kodak24": "image files anywhere under the folder (test: noisy pairs at sigma 15, 25, 50)",
        "urban100": "image files anywhere under the folder (test: noisy pairs at sigma 15, 25, 50)",
        "bsd400": "image files anywhere under the folder (train: clean images)",
        "wed": "image files anywhere under the folder (train: clean images)",
        "div2k": "high-resolution image files anywhere under the folder (train: clean images)",
    }
)
CLEAN_SET_SPLITS: Mapping[str, str] = MappingProxyType(
    {
        "cbsd68": "test",
        "kodak24": "test",
        "urban100": "test",
        "bsd400": "train",
        "wed": "train",
        "div2k": "train",
    }
)


@dataclass(frozen=True)
class PairRef:
    """A degraded/clean pair on disk, with its task name, split, source kind and the parameters that describe it.

    ``degraded`` is None when the degraded image is not a file: for the denoising test sets it is synthesised
    from ``clean`` with ``params`` ({"sigma", "seed"}); for the clean training sets ``params`` is empty and the
    degraded image is left to the caller (see :meth:`as_image_ref`).
    """

    name: str
    task: str
    split: str
    source: str
    degraded: str | None
    clean: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    def load_clean(self) -> np.ndarray:
        """The clean image as RGB float32 in [0, 1]."""
        return load_image(self.clean)

    def load_degraded(self) -> np.ndarray:
        """The degraded image as RGB float32 in [0, 1], made with the fixed noise where there is no file."""
        if self.degraded is not None:
            return load_image(self.degraded)
        if "sigma" in self.params and "seed" in self.params:
            return add_fixed_noise(self.load_clean(), self.params["sigma"], self.params["seed"])
        raise ImageError(
            "no_degraded",
            f"{self.name} is a clean training image with no degraded version; "
            "degrade it on the fly (use pair.as_image_ref() as a clean image source)",
        )

    def as_image_ref(self) -> ImageRef:
        """The clean side as an ImageRef, for the clean training sets that are degraded synthetically."""
        return ImageRef(name=self.name, source=self.source, path=self.clean)


class Pairs(list[PairRef]):
    """A list of pairs that also carries ``unmatched``: files (relative to the set's folder) with no partner."""

    def __init__(self, pairs: Iterable[PairRef] = (), unmatched: Iterable[str] = ()) -> None:
        super().__init__(pairs)
        self.unmatched = tuple(unmatched)


def add_fixed_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Additive white Gaussian noise of ``sigma`` (in 0-255 units) per channel, clipped and rounded to 8-bit levels.

    The same (image, sigma, seed) always gives the same noisy image, so test sets are identical across runs.
    """
    return apply_gaussian(image, eval_params(sigma, seed))


def noise_seed(image_name: str, sigma: float) -> int:
    """The fixed seed for one image at one sigma: a stable hash, the same on every machine and Python version."""
    return zlib.crc32(f"{image_name}:{sigma}".encode())


def lol(root: str | Path) -> Pairs:
    """LOL low-light pairs: our485/{low,high} (train) and eval15/{low,high} (test), matched by file name."""
    root = _folder(root, "lol")
    task = get_task("lowlight").name
    pairs: list[PairRef] = []
    unmatched: list[str] = []
    splits = [(split, _child(root, folder)) for split, folder in (("train", "our485"), ("test", "eval15"))]
    if all(folder is None for _, folder in splits):
        raise _layout_error("lol", root)
    for split, folder in splits:
        if folder is None:
            continue
        low, high = _child(folder, "low"), _child(folder, "high")
        if low is None or high is None:
            raise _layout_error("lol", folder, "low/ and high/")
        for key, degraded, clean in _match(_images_in(low), _images_in(high), unmatched, root):
            pairs.append(_pair(f"lol/{split}/{key}", task, split, "lol", degraded, clean))
    return _result("lol", root, pairs, unmatched)


def gopro(root: str | Path) -> Pairs:
    """GoPro deblurring pairs: per-sequence blur/ and sharp/ (blur_gamma/ is ignored), or repacked input/target."""
    root = _folder(root, "gopro")
    task = get_task("deblur").name
    pairs: list[PairRef] = []
    unmatched: list[str] = []
    splits = [(split, _child(root, split)) for split in ("train", "test")]
    if all(folder is None for _, folder in splits):
        raise _layout_error("gopro", root)
    for split, folder in splits:
        if folder is None:
            continue
        blurred, sharp = _child(folder, "input"), _child(folder, "target")
        if blurred is not None and sharp is not None:
            for key, degraded, clean in _match(_images_in(blurred), _images_in(sharp), unmatched, root):
                pairs.append(_pair(f"gopro/{split}/{key}", task, split, "gopro", degraded, clean))
            continue
        sequences = [path for path in _subfolders(folder) if _child(path, "sharp") is not None]
        if not sequences:
            raise _layout_error("gopro", folder, "GOPRxxxx_xx_xx/{blur,sharp}/ sequence folders or input/ and target/")
        for sequence in _subfolders(folder):
            blurred, sharp = _child(sequence, "blur"), _child(sequence, "sharp")
            if blurred is None or sharp is None:
                unmatched.append(_relative(sequence, root) + "/ (needs blur/ and sharp/)")
                continue
            for key, degraded, clean in _match(_images_in(blurred), _images_in(sharp), unmatched, root):
                name = f"gopro/{split}/{sequence.name}/{key}"
                pairs.append(_pair(name, task, split, "gopro", degraded, clean, {"sequence": sequence.name}))
    return _result("gopro", root, pairs, unmatched)


def sots(root: str | Path) -> Pairs:
    """SOTS dehazing test pairs: hazy NNNN_A_beta images to clear NNNN (A and beta go into params), or IN/GT."""
    root = _folder(root, "sots")
    task = get_task("dehaze").name
    pairs: list[PairRef] = []
    unmatched: list[str] = []
    folders = [(root, "")] if _sots_dirs(root) else [(path, path.name + "/") for path in _subfolders(root)]
    folders = [(folder, prefix) for folder, prefix in folders if _sots_dirs(folder)]
    if not folders:
        raise _layout_error("sots", root)
    for folder, prefix in folders:
        hazy, clear = _sots_dirs(folder)
        clean_files = _images_in(clear)
        clean_stems = {path.stem for path in clean_files}

        def hazy_key(path: Path, clean_stems: set[str] = clean_stems) -> str:
            return path.stem if path.stem in clean_stems else path.stem.split("_")[0]

        for _, degraded, clean in _match(_images_in(hazy), clean_files, unmatched, root, degraded_key=hazy_key):
            name = f"sots/{prefix}{degraded.stem}"
            pairs.append(_pair(name, task, "test", "sots", degraded, clean, _haze_params(degraded.stem)))
    return _result("sots", root, pairs, unmatched)


def rain100l(root: str | Path) -> Pairs:
    """Rain100L test pairs: input/ and target/, or rain-N / norain-N files (in rainy/, norain/ or side by side)."""
    root = _folder(root, "rain100l")
    task = get_task("derain").name
    pairs: list[PairRef] = []
    unmatched: list[str] = []
    rainy, clean_dir = _child(root, "input"), _child(root, "target")
    if rainy is not None and clean_dir is not None:
        matched = _match(_images_in(rainy), _images_in(clean_dir), unmatched, root)
    else:
        folders = [root, *(path for path in (_child(root, name) for name in ("rainy", "rain", "norain")) if path)]
        files = [path for folder in folders for path in _images_in(folder)]
        degraded = [path for path in files if path.stem.lower().startswith("rain-")]
        clean = [path for path in files if path.stem.lower().startswith("norain-")]
        if not degraded or not clean:
            raise _layout_error("rain100l", root)
        matched = _match(degraded, clean, unmatched, root, degraded_key=_rain_key, clean_key=_rain_key)
    for _, degraded_path, clean_path in matched:
        pairs.append(_pair(f"rain100l/test/{degraded_path.stem}", task, "test", "rain100l", degraded_path, clean_path))
    return _result("rain100l", root, pairs, unmatched)


def clean_set(kind: str, root: str | Path, sigmas: Iterable[int] = TEST_SIGMAS) -> Pairs:
    """A clean denoising set: test sets become fixed-noise pairs per sigma, training sets clean-only refs.

    The images are every image file under ``root`` (see ``folder_images``). A test pair's seed is
    ``noise_seed(image name, sigma)`` with the image's relative path without extension as its name, so moving the
    folder or converting PNG to BMP does not change the noise.
    """
    if kind not in CLEAN_SET_SPLITS:
        raise ValueError(f"unknown clean set {kind!r}; known: {', '.join(CLEAN_SET_SPLITS)}")
    root = _folder(root, kind)
    split = CLEAN_SET_SPLITS[kind]
    task = get_task("denoise").name
    refs = folder_images(root)
    if not refs:
        raise _layout_error(kind, root)
    pairs: list[PairRef] = []
    for ref in refs:
        image = PurePosixPath(ref.name).with_suffix("").as_posix()
        if split == "train":
            pairs.append(PairRef(f"{kind}/train/{image}", task, split, kind, None, str(ref.path)))
            continue
        for sigma in sigmas:
            params = {"sigma": sigma, "seed": noise_seed(image, sigma)}
            pairs.append(PairRef(f"{kind}/test/s{sigma}/{image}", task, split, kind, None, str(ref.path), params))
    return Pairs(pairs)


def import_paired(spec: str) -> Pairs:
    """Import a paired set from "KIND:DIR" (e.g. "lol:/data/LOL"); files with no partner are in ``.unmatched``.

    Raises ValueError for an unknown kind (listing the known ones), a missing folder, or a folder that is not in
    the kind's layout (saying which layout was expected and what was found).
    """
    kind, separator, folder = spec.partition(":")
    kind = kind.strip().lower()
    known = ", ".join(LAYOUTS)
    if not separator or not kind or not folder.strip():
        raise ValueError(f"expected KIND:DIR (e.g. lol:/data/LOL), got {spec!r}; known kinds: {known}")
    if kind not in LAYOUTS:
        raise ValueError(f"unknown paired set kind {kind!r} in {spec!r}; known kinds: {known}")
    importers: dict[str, Callable[[str], Pairs]] = {"lol": lol, "gopro": gopro, "sots": sots, "rain100l": rain100l}
    if kind in importers:
        return importers[kind](folder.strip())
    return clean_set(kind, folder.strip())


_RAIN = re.compile(r"^(?:no)?rain-(.+)$", re.IGNORECASE)


def _rain_key(path: Path) -> str:
    match = _RAIN.match(path.stem)
    suffix = match.group(1) if match else path.stem
    return str(int(suffix)) if suffix.isdigit() else suffix.lower()


def _haze_params(stem: str) -> dict[str, Any]:
    parts = stem.split("_")
    if len(parts) == 3:
        try:
            return {"airlight": float(parts[1]), "beta": float(parts[2])}
        except ValueError:
            pass
    return {}


def _sots_dirs(folder: Path) -> tuple[Path, Path] | None:
    hazy, clear = _child(folder, "hazy"), _child(folder, "clear", "gt")
    if hazy is not None and clear is not None:
        return hazy, clear
    hazy, clear = _child(folder, "in"), _child(folder, "gt")
    if hazy is not None and clear is not None:
        return hazy, clear
    return None


def _pair(
    name: str, task: str, split: str, source: str, degraded: Path, clean: Path, params: dict | None = None
) -> PairRef:
    return PairRef(name, task, split, source, str(degraded), str(clean), params or {})


def _folder(root: str | Path, kind: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"{kind}: {root} is not a folder; expected a folder laid out as {LAYOUTS[kind]}")
    return root


def _child(folder: Path, *names: str) -> Path | None:
    """The subfolder called any of ``names``, ignoring case (archives differ: GT, gt, Gt), or None."""
    wanted = [name.lower() for name in names]
    children = {path.name.lower(): path for path in _subfolders(folder)}
    return next((children[name] for name in wanted if name in children), None)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def _stem(path: Path) -> str:
    return path.stem


def _match(
    degraded: list[Path],
    clean: list[Path],
    unmatched: list[str],
    root: Path,
    degraded_key: Callable[[Path], str] = _stem,
    clean_key: Callable[[Path], str] = _stem,
) -> list[tuple[str, Path, Path]]:
    """(key, degraded, clean) for every degraded file whose key names a clean file; the rest go to ``unmatched``.

    Several degraded files may share one clean file (SOTS has many hazy versions of one scene). A clean key that
    occurs twice (a.png and a.jpg) is ambiguous: the first is used and the second reported; likewise a second
    degraded file with an already paired name.
    """
    by_key: dict[str, Path] = {}
    for path in clean:
        key = clean_key(path)
        if key in by_key:
            unmatched.append(_relative(path, root))
        else:
            by_key[key] = path
    used: set[str] = set()
    names: set[str] = set()
    matched: list[tuple[str, Path, Path]] = []
    for path in degraded:
        key = degraded_key(path)
        if key in by_key and path.stem not in names:
            names.add(path.stem)
            matched.append((path.stem, path, by_key[key]))
            used.add(key)
        else:
            unmatched.append(_relative(path, root))
    unmatched.extend(_relative(path, root) for key, path in by_key.items() if key not in used)
    return matched


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _layout_error(kind: str, folder: Path, expected: str | None = None) -> ValueError:
    entries = sorted(
        path.name + ("/" if path.is_dir() else "") for path in folder.iterdir() if not path.name.startswith(".")
    )
    found = ", ".join(entries[:12]) + (f", ... ({len(entries)} entries)" if len(entries) > 12 else "")
    return ValueError(
        f"{folder} is not in a {kind} layout: expected {expected or LAYOUTS[kind]}; found {found or 'nothing'}"
    )


def _result(kind: str, root: Path, pairs: list[PairRef], unmatched: list[str]) -> Pairs:
    if not pairs:
        examples = ", ".join(unmatched[:5]) or "no image files"
        raise ValueError(
            f"{root}: found the {kind} folders but no matching pairs ({len(unmatched)} unmatched: {examples}); "
            f"expected {LAYOUTS[kind]}"
        )
    return Pairs(pairs, unmatched)
