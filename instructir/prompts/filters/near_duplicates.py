"""Near-duplicates by MinHash-LSH (datasketch) on word 1-2-gram shingles, checked by exact Jaccard.

Rows are visited in order; a row whose shingle set has Jaccard similarity >= ``threshold`` with an earlier
kept row is dropped. LSH proposes the candidates in O(1) per row, so the stage is linear in the row count;
the exact Jaccard check removes LSH's false positives. Word shingles suit 5-25-word requests: two requests
that differ in one or two words share most of their unigrams and bigrams.
"""

from __future__ import annotations

from dataclasses import dataclass

from instructir.prompts.filters.stage import Row, StageResult
from instructir.prompts.rules import normalise


def shingles(text: str, max_n: int = 2) -> frozenset[str]:
    """Word n-grams (1..max_n) of the normalised text."""
    words = normalise(text).split()
    grams = {" ".join(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)}
    return frozenset(grams or {""})


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Size of the intersection over size of the union."""
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class NearDuplicates:
    """Drop rows within ``threshold`` Jaccard similarity of an earlier kept row."""

    threshold: float = 0.7
    num_perm: int = 128
    max_n: int = 2
    seed: int = 1
    name: str = "near_duplicate"

    def run(self, rows: list[Row]) -> StageResult:
        from datasketch import MinHash, MinHashLSH

        sets = [shingles(row["text"], self.max_n) for row in rows]
        encoded = [[gram.encode("utf-8") for gram in grams] for grams in sets]
        hashes = MinHash.bulk(encoded, num_perm=self.num_perm, seed=self.seed)
        index = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        kept: dict[str, tuple[int, frozenset[str]]] = {}
        result = StageResult()
        for row, grams, minhash in zip(rows, sets, hashes, strict=True):
            match = self._match(index.query(minhash), grams, kept)
            if match is not None:
                result.drop(row, "near_duplicate", duplicate_of=match)
                continue
            index.insert(row["id"], minhash)
            kept[row["id"]] = (len(kept), grams)
            result.kept.append(row)
        return result

    def _match(
        self, proposals: list[str], grams: frozenset[str], kept: dict[str, tuple[int, frozenset[str]]]
    ) -> str | None:
        """The earliest kept proposal that is truly within the threshold, if any."""
        matches = [key for key in proposals if jaccard(grams, kept[key][1]) >= self.threshold]
        return min(matches, key=lambda key: kept[key][0]) if matches else None
