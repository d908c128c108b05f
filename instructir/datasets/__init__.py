"""Training and evaluation data: image sources, synthetic degradations and paired datasets."""
