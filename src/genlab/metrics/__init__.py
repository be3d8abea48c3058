"""Metrics per modality: likelihoods (``likelihood``), sample-based image metrics and feature networks
(``images``, ``classifier``), text (``text``)."""
