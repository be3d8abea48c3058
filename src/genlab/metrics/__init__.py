"""Metrics: likelihoods (``likelihood``), feature networks and their cache (``features``), distribution metrics on
any features (``distribution``), and each modality's own (``images``, ``text``)."""
