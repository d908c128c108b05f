"""The hand-written real requests: enough of them, every task labelled, none copied from the corpus or the seeds."""

from collections import Counter

from conftest import REPO

from instructir.analysis import load_labelled
from instructir.tasks import all_tasks

REAL = REPO / "tests" / "data" / "real_requests.jsonl"


def normalised(text: str) -> str:
    return " ".join(text.lower().strip(" .?!").split())


def test_at_least_150_labelled_requests_covering_every_task():
    real = load_labelled(REAL)
    counts = Counter(int(label) for label in real.labels)
    assert len(real) >= 150
    assert set(counts) == {task.id for task in all_tasks()}
    assert min(counts.values()) >= 15
    assert len({normalised(text) for text in real.texts}) == len(real)


def test_no_request_is_taken_from_the_shipped_corpus_or_the_registry_seeds():
    real = {normalised(text) for text in load_labelled(REAL).texts}
    corpus = {normalised(text) for text in load_labelled("instructir-requests").texts}
    seeds = {normalised(seed) for task in all_tasks() for seed in task.seeds}
    assert not real & corpus
    assert not real & seeds
