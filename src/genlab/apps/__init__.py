"""What models are used for, one module per use (e.g. :mod:`genlab.apps.harmonize`)."""
