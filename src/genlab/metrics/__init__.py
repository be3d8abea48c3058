"""Metrics per modality (likelihoods now; sample-based image metrics later)."""
