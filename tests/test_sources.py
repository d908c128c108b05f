"""Clean-image sources and paired-set importers on small folder trees laid out like the real downloads."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructir.datasets.images import ImageError
from instructir.datasets.paired import (
    Pairs,
    add_fixed_noise,
    clean_set,
    gopro,
    import_paired,
    lol,
    noise_seed,
    rain100l,
    sots,
)
from instructir.datasets.sources import ImageRef, folder_images, listed_images, sample_images


def tiny(path: Path, value: int = 128, size: int = 8) -> Path:
    """Write a small flat PNG (or whatever the suffix says), creating folders as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)
    return path


def number(path: str) -> int:
    return int(re.findall(r"\d+", Path(path).stem)[-1])


def tree(root: Path, *files: str) -> Path:
    for index, name in enumerate(files):
        tiny(root / name, value=10 + index)
    return root


# -- clean sources ---------------------------------------------------------------------------------------------------


def test_folder_images_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path):
    tree(tmp_path, "b.png", "A/c.JPG", "A/deep/e.TiFf", "A/f.jpeg", "g.webp", "h.BMP", ".hidden.png", ".cache/x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    refs = folder_images(tmp_path)
    assert [ref.name for ref in refs] == ["A/c.JPG", "A/deep/e.TiFf", "A/f.jpeg", "b.png", "g.webp", "h.BMP"]
    assert {ref.source for ref in refs} == {"folder"}
    assert refs[2].load().shape == (8, 8, 3)
    assert folder_images(tmp_path) == refs  # deterministic
    with pytest.raises(FileNotFoundError, match="no such folder"):
        folder_images(tmp_path / "missing")


def test_listed_images_resolves_relative_paths_and_ignores_comments(tmp_path):
    tree(tmp_path, "images/a.png", "images/sub/b.jpg", "elsewhere/c.png")
    absolute = tmp_path / "elsewhere" / "c.png"
    list_file = tmp_path / "images" / "list.txt"
    list_file.write_text(f"# training images\n\na.png\n  sub/b.jpg  \n{absolute}\n# sub/missing.png\n")
    refs = listed_images(list_file)
    assert [ref.name for ref in refs] == ["a.png", "sub/b.jpg", absolute.as_posix()]
    assert {ref.source for ref in refs} == {"list"}
    assert refs[1].load().dtype == np.float32


def test_listed_images_names_the_line_of_a_missing_or_repeated_entry(tmp_path):
    tree(tmp_path, "a.png")
    list_file = tmp_path / "list.txt"
    list_file.write_text("a.png\n# comment\n\nmissing.png\n")
    with pytest.raises(FileNotFoundError, match=r"line 4: 'missing.png' not found"):
        listed_images(list_file)
    list_file.write_text("a.png\n./a.png\n")
    with pytest.raises(ValueError, match=r"line 2.*already listed on line 1"):
        listed_images(list_file)


def test_sample_images_are_the_eleven_wheel_photos_as_rgb_float32():
    refs = sample_images()
    assert len(refs) == 11 and refs.skipped == ()
    assert len({ref.name for ref in refs}) == 11
    assert "samples/stereo_motorcycle" in {ref.name for ref in refs}
    for ref in refs:
        assert ref.source == "samples" and ref.path is None and ref.key
        image = ref.load()
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3, ref.name
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > image.min()


def test_image_refs_are_hashable_and_picklable():
    ref = ImageRef(name="samples/coffee", source="samples", path=None, key="skimage.data:coffee.png")
    assert pickle.loads(pickle.dumps(ref)) == ref and len({ref, ref}) == 1
    with pytest.raises(ValueError, match="neither a path nor a key"):
        ImageRef(name="x", source="folder", path=None).load()


# -- paired sets -----------------------------------------------------------------------------------------------------


def test_lol_matches_low_and_high_by_name_and_reports_strays(tmp_path):
    tree(tmp_path, "our485/low/1.png", "our485/high/1.png", "our485/low/2.png", "eval15/low/5.png", "eval15/high/5.png")
    pairs = lol(tmp_path)
    assert isinstance(pairs, Pairs) and isinstance(pairs, list)
    assert [(pair.name, pair.split, pair.task) for pair in pairs] == [
        ("lol/train/1", "train", "lowlight"),
        ("lol/test/5", "test", "lowlight"),
    ]
    assert pairs.unmatched == ("our485/low/2.png",)
    assert pairs[0].degraded.endswith("our485/low/1.png") and pairs[0].clean.endswith("our485/high/1.png")
    assert pairs[0].load_degraded().shape == pairs[0].load_clean().shape == (8, 8, 3)


def test_a_wrong_layout_says_what_was_expected_and_what_was_found(tmp_path):
    tree(tmp_path, "photos/a.png", "b.png")
    with pytest.raises(ValueError, match=r"expected our485/\{low,high\}.*found b\.png, photos/"):
        lol(tmp_path)
    tree(tmp_path, "our485/dark/1.png")
    with pytest.raises(ValueError, match="expected low/ and high/"):
        lol(tmp_path)
    for importer in (gopro, sots, rain100l):
        with pytest.raises(ValueError, match=r"is not in a .* layout: expected"):
            importer(tmp_path / "photos")


def test_gopro_sequences_use_blur_not_blur_gamma(tmp_path):
    sequence = "train/GOPR0372_07_00"
    tree(tmp_path, f"{sequence}/blur/000047.png", f"{sequence}/blur_gamma/000047.png", f"{sequence}/sharp/000047.png")
    tree(tmp_path, "train/GOPR0001_00_00/blur_gamma/000001.png", "train/GOPR0001_00_00/sharp/000001.png")
    pairs = gopro(tmp_path)
    assert [pair.name for pair in pairs] == ["gopro/train/GOPR0372_07_00/000047"]
    assert Path(pairs[0].degraded).parent.name == "blur"
    assert pairs[0].task == "deblur" and pairs[0].params == {"sequence": "GOPR0372_07_00"}
    assert pairs.unmatched == ("train/GOPR0001_00_00/ (needs blur/ and sharp/)",)


def test_gopro_repacked_input_target(tmp_path):
    tree(tmp_path, "test/input/a.png", "test/target/a.png", "test/input/b.png", "test/target/b.png")
    pairs = gopro(tmp_path)
    assert [(pair.name, pair.split) for pair in pairs] == [("gopro/test/a", "test"), ("gopro/test/b", "test")]
    assert pairs.unmatched == ()


def test_sots_parses_airlight_and_beta_and_shares_one_clear_image(tmp_path):
    tree(tmp_path, "hazy/0001_0.8_0.2.jpg", "hazy/0001_0.9_0.16.jpg", "clear/0001.png", "clear/0002.png")
    pairs = sots(tmp_path)
    assert [pair.name for pair in pairs] == ["sots/0001_0.8_0.2", "sots/0001_0.9_0.16"]
    assert pairs[0].params == {"airlight": 0.8, "beta": 0.2} and pairs[1].params == {"airlight": 0.9, "beta": 0.16}
    assert {pair.clean for pair in pairs} == {str(tmp_path / "clear" / "0001.png")}
    assert {(pair.task, pair.split) for pair in pairs} == {("dehaze", "test")}
    assert pairs.unmatched == ("clear/0002.png",)


def test_sots_in_gt_layout_and_outdoor_indoor_subfolders(tmp_path):
    tree(tmp_path / "flat", "IN/a.png", "GT/a.png")
    assert [pair.name for pair in sots(tmp_path / "flat")] == ["sots/a"]
    tree(tmp_path / "reside", "outdoor/hazy/0005_1_0.2.jpg", "outdoor/gt/0005.png", "indoor/hazy/1400_1.png")
    tree(tmp_path / "reside", "indoor/gt/1400.png")
    pairs = sots(tmp_path / "reside")
    assert [(pair.name, pair.params) for pair in pairs] == [
        ("sots/indoor/1400_1", {}),
        ("sots/outdoor/0005_1_0.2", {"airlight": 1.0, "beta": 0.2}),
    ]


@pytest.mark.parametrize(
    "files",
    [
        ("input/1.png", "target/1.png", "input/2.png", "target/2.png"),
        ("rainy/rain-1.png", "norain-1.png", "rainy/rain-2.png", "norain-2.png"),
        ("rainy/rain-001.png", "norain/norain-1.png", "rainy/rain-2.png", "norain/norain-002.png"),
        ("rain-1.png", "norain-1.png", "rain-2.png", "norain-2.png"),
    ],
    ids=["input-target", "rainy-beside", "rainy-norain-folder", "side-by-side"],
)
def test_rain100l_layouts(tmp_path, files):
    tree(tmp_path, *files)
    pairs = rain100l(tmp_path)
    assert len(pairs) == 2 and pairs.unmatched == ()
    assert {(pair.task, pair.split, pair.source) for pair in pairs} == {("derain", "test", "rain100l")}
    for pair in pairs:
        assert number(pair.clean) == number(pair.degraded)


def test_fixed_noise_test_sets_are_reproducible_and_differ_by_sigma(tmp_path):
    tiny(tmp_path / "sub" / "0001.png", value=128, size=32)
    pairs = clean_set("cbsd68", tmp_path)
    assert [pair.name for pair in pairs] == [f"cbsd68/test/s{sigma}/sub/0001" for sigma in (15, 25, 50)]
    assert all(pair.degraded is None and pair.split == "test" and pair.task == "denoise" for pair in pairs)
    assert pairs[1].params == {"sigma": 25, "seed": noise_seed("sub/0001", 25)}
    first = [pair.load_degraded() for pair in pairs]
    again = [pair.load_degraded() for pair in clean_set("cbsd68", tmp_path)]
    for noisy, repeat in zip(first, again, strict=True):
        np.testing.assert_array_equal(noisy, repeat)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    clean = pairs[0].load_clean()
    for noisy, sigma in zip(first, (15, 25, 50), strict=True):
        assert noisy.dtype == np.float32 and noisy.shape == clean.shape
        np.testing.assert_array_equal(np.rint(noisy * 255), noisy * 255)  # on 8-bit levels
        assert abs((noisy - clean).std() * 255 - sigma) < 0.15 * sigma  # per-channel AWGN at about sigma


def test_add_fixed_noise_is_a_pure_function_of_its_arguments():
    image = np.full((16, 16, 3), 0.5, dtype=np.float32)
    np.testing.assert_array_equal(add_fixed_noise(image, 25, 7), add_fixed_noise(image, 25, 7))
    assert not np.array_equal(add_fixed_noise(image, 25, 7), add_fixed_noise(image, 25, 8))
    noisy = add_fixed_noise(image, 50, 1)
    assert not np.array_equal(noisy[..., 0], noisy[..., 1])  # independent per channel
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0


def test_training_clean_sets_have_no_degraded_file(tmp_path):
    tree(tmp_path, "a.png", "nested/b.jpg")
    pairs = clean_set("bsd400", tmp_path)
    assert [(pair.name, pair.split, pair.degraded) for pair in pairs] == [
        ("bsd400/train/a", "train", None),
        ("bsd400/train/nested/b", "train", None),
    ]
    with pytest.raises(ImageError) as caught:
        pairs[0].load_degraded()
    assert caught.value.reason == "no_degraded"
    ref = pairs[1].as_image_ref()
    assert ref.source == "bsd400" and ref.load().shape == (8, 8, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"is not in a wed layout.*found nothing"):
        clean_set("wed", tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown clean set 'set5'"):
        clean_set("set5", tmp_path)


def test_import_paired_dispatches_and_explains_bad_specs(tmp_path):
    tree(tmp_path / "LOL", "eval15/low/1.png", "eval15/high/1.png")
    pairs = import_paired(f"LOL:{tmp_path / 'LOL'}")
    assert [pair.name for pair in pairs] == ["lol/test/1"]
    tree(tmp_path / "kodak", "kodim01.png")
    assert len(import_paired(f"kodak24:{tmp_path / 'kodak'}")) == 3
    with pytest.raises(ValueError, match=r"unknown paired set kind 'foo'.*known kinds: lol, gopro, sots, rain100l"):
        import_paired(f"foo:{tmp_path}")
    with pytest.raises(ValueError, match=r"is not a folder; expected a folder laid out as our485"):
        import_paired(f"lol:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="expected KIND:DIR"):
        import_paired(str(tmp_path))


def test_pairs_are_hashable_and_keep_unmatched_through_pickling(tmp_path):
    tree(tmp_path, "eval15/low/1.png", "eval15/high/1.png", "eval15/high/2.png")
    pairs = lol(tmp_path)
    copy = pickle.loads(pickle.dumps(pairs))
    assert copy == pairs and copy.unmatched == ("eval15/high/2.png",)
    assert len(set(pairs)) == 1
