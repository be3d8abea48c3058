"""Responsible generation: provenance anyone can verify, watermarks, memorization, privacy and bias audits.

One module per job, none of them imported by ``import genlab`` (the heavy packages they need, ``c2pa-python``,
``cryptography`` and ``opacus``, are the ``audit`` extra and load only when used):

* :mod:`~genlab.audit.keys` — the user's own signing identity (``genlab keys init``); nothing is shipped.
* :mod:`~genlab.audit.provenance` — C2PA manifests on PNG/JPEG samples, signed JSON sidecars on other files,
  ``genlab verify`` (valid / invalid / unsigned).
* :mod:`~genlab.audit.watermark` — Tree-Ring for diffusion, the green-list watermark for GPT text, detection.
* :mod:`~genlab.audit.memorization` — tiled pixel and feature-space copy detection, the extraction attack.
* :mod:`~genlab.audit.privacy` — DP-SGD (Opacus) for the trainer; membership inference and DCR scores.
* :mod:`~genlab.audit.bias` — class balance, per-class accuracy, demographic parity, gendered-term shares.
* :mod:`~genlab.audit.model_card` — ``genlab audit RUN``: ``audit.json``, ``MODEL_CARD.md``, report section.
"""
