"""The task registry: stable ids, valid seeds, clear errors for unknown names."""

import pytest

from instructir.prompts.rules import check_format, normalise
from instructir.tasks import all_tasks, get_task, resolve_tasks, task_names

REQUIRED = ["denoise", "deblur", "derain", "dehaze", "lowlight", "superres", "enhance", "ambiguous"]


def test_ids_follow_the_official_head_order_and_never_move():
    ids = {task.name: task.id for task in all_tasks()}
    assert ids == {name: i for i, name in enumerate(REQUIRED)}


def test_every_required_task_has_10_to_15_distinct_valid_seeds():
    assert set(REQUIRED) <= set(task_names())
    keys = set()
    for task in all_tasks():
        assert 10 <= len(task.seeds) <= 15, task.name
        for seed in task.seeds:
            assert check_format(seed) is None, (task.name, seed, check_format(seed))
            assert normalise(seed) not in keys, seed
            keys.add(normalise(seed))


def test_lookup_by_name_and_id():
    assert get_task("dehaze") is get_task(3)
    with pytest.raises(KeyError, match="known tasks: denoise"):
        get_task("dejpeg")


def test_resolve_accepts_comma_lists_and_rejects_unknown_names():
    assert [t.name for t in resolve_tasks(["deblur,denoise", "deblur"])] == ["denoise", "deblur"]
    assert len(resolve_tasks(None)) == len(all_tasks())
    with pytest.raises(ValueError, match=r"unknown task.*denoize.*choose from"):
        resolve_tasks(["denoize"])
