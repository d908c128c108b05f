"""The filtering cascade: small stages that each keep rows or drop them with a reason.

Cheap stages run first: quality rules, exact duplicates, MinHash near-duplicates, then the stages that need
sentence embeddings: semantic duplicates, label consistency and topic relevance.
``cascade.filter_candidates`` runs them in order and keeps the funnel.
"""
