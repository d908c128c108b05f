"""One command from nothing to a corpus, a dataset, a trained model, its evaluation and an analysis report.

``load_config`` validates a YAML run config (or a named profile); ``run_pipeline`` runs the stages in order,
skipping those whose recorded fingerprint matches and resuming the one a killed run left unfinished.
"""

from instructir.pipeline.config import RunConfig, load_config, profile_config, render_config
from instructir.pipeline.runner import STAGES, run_pipeline

__all__ = ["STAGES", "RunConfig", "load_config", "profile_config", "render_config", "run_pipeline"]
