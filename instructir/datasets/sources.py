"""Where clean images come from: a folder tree, a list file, or the sample photos that ship inside installed wheels.

Every source returns :class:`ImageRef` objects in a deterministic order. A ref is cheap (a name and a path); the
pixels are decoded only when :meth:`ImageRef.load` is called, so listing a folder of 100,000 photos is fast and a
worker process can be handed refs instead of arrays.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from instructir.datasets.images import load_image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# (name, package, resource inside the package): photos that pip installs with scikit-image, scikit-learn and
# matplotlib, so a pipeline can be tried with no download at all.
_SAMPLES: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "skimage.data", "astronaut.png"),
    ("coffee", "skimage.data", "coffee.png"),
    ("chelsea", "skimage.data", "chelsea.png"),
    ("rocket", "skimage.data", "rocket.jpg"),
    ("hubble_deep_field", "skimage.data", "hubble_deep_field.jpg"),
    ("immunohistochemistry", "skimage.data", "ihc.png"),
    ("retina", "skimage.data", "retina.jpg"),
    ("stereo_motorcycle", "skimage.data", "motorcycle_left.png"),  # the left view of the stereo pair
    ("china", "sklearn.datasets.images", "china.jpg"),
    ("flower", "sklearn.datasets.images", "flower.jpg"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


@dataclass(frozen=True)
class ImageRef:
    """A clean image that has not been decoded yet: a stable unique ``name``, its ``source`` kind and where it is.

    ``path`` is a file path; wheel samples have ``path=None`` and a ``key`` ("package:resource") instead, so their
    names and keys are the same on every machine.
    """

    name: str
    source: str
    path: str | None
    key: str | None = None

    def load(self, max_pixels: int = 100_000_000) -> np.ndarray:
        """Decode the image to RGB float32 HxWx3 in [0, 1]; raises ImageError for a broken file."""
        if self.path is not None:
            return load_image(self.path, max_pixels=max_pixels)
        if self.key is not None:
            with resources.as_file(_resource(self.key)) as path:
                return load_image(path, max_pixels=max_pixels)
        raise ValueError(f"image ref {self.name!r} has neither a path nor a key")


class ImageRefs(list[ImageRef]):
    """A list of refs that also carries ``skipped``: one message per image that was left out, and why."""

    def __init__(self, refs: list[ImageRef] | tuple[ImageRef, ...] = (), skipped: tuple[str, ...] = ()) -> None:
        super().__init__(refs)
        self.skipped = tuple(skipped)


def folder_images(root: str | Path) -> list[ImageRef]:
    """Every image file under ``root``, recursively, sorted by relative path; hidden files and folders are skipped.

    Names are paths relative to ``root`` with forward slashes, so they are the same on every OS and machine.
    Symlinked folders are not followed (no cycles); symlinked files are listed.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder; give a folder that contains images")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder; give a folder, or use listed_images for a list file")
    found: list[tuple[str, Path]] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(folder, name)
            found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return [ImageRef(name=relative, source="folder", path=str(path)) for relative, path in found]


def listed_images(list_file: str | Path) -> list[ImageRef]:
    """The images named in a text file, one path per line, in file order.

    Relative paths are relative to the list file's folder; absolute paths are used as they are. Blank lines and
    lines starting with ``#`` are ignored. A path that does not exist, or one listed twice, raises an error naming
    the line, so a typo never silently shrinks a dataset.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: no such list file; give a text file with one image path per line")
    base = list_file.parent
    refs: list[ImageRef] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        written = Path(entry).expanduser()
        path = written if written.is_absolute() else base / written
        if not path.is_file():
            raise FileNotFoundError(
                f"{list_file}, line {number}: {entry!r} not found (looked for {path}); "
                "relative paths are taken from the list file's folder"
            )
        name = _list_name(written, path, base)
        if name in seen:
            raise ValueError(f"{list_file}, line {number}: {entry!r} is already listed on line {seen[name]}")
        seen[name] = number
        refs.append(ImageRef(name=name, source="list", path=str(path)))
    return refs


def sample_images() -> ImageRefs:
    """The 11 sample photos installed with scikit-image, scikit-learn and matplotlib; no network needed.

    A sample whose package or file is missing is left out with a warning and listed in the result's ``skipped``.
    """
    refs: list[ImageRef] = []
    skipped: list[str] = []
    for name, package, resource in _SAMPLES:
        key = f"{package}:{resource}"
        try:
            present = _resource(key).is_file()
        except Exception as error:  # package not installed, or broken
            present, reason = False, f"{type(error).__name__}: {error}"
        else:
            reason = f"{resource} is not in the installed {package}"
        if present:
            refs.append(ImageRef(name=f"samples/{name}", source="samples", path=None, key=key))
        else:
            skipped.append(f"samples/{name}: {reason}")
            warnings.warn(f"sample image samples/{name} skipped: {reason}", stacklevel=2)
    return ImageRefs(refs, tuple(skipped))


def _resource(key: str):
    package, _, resource = key.partition(":")
    return resources.files(package).joinpath(resource)


def _list_name(written: Path, path: Path, base: Path) -> str:
    if not written.is_absolute():
        return Path(os.path.normpath(written)).as_posix()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()
