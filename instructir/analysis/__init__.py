"""Analysis of request corpora and models: embedding clusters, diversity, synthetic-to-real generalisation.

Every analysis reads labelled texts (``load_labelled``), embeds them once through the disk-cached encoder
(``embed_texts``) and writes one report per run (``Report``: report.html, report.md, metrics.json).
"""

from instructir.analysis.labelled import LabelledTexts, embed_texts, load_labelled
from instructir.analysis.report import Report

__all__ = ["LabelledTexts", "Report", "embed_texts", "load_labelled"]
