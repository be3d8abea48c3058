"""Export modules of the data kinds that need their own: ``<kind>.py`` holds the kind's sample writer (and any
runtime of its own) and imports no torch; ``<kind>_graphs.py`` holds the exporters of the kind's own networks
(registered with ``register_exporter(family, form)``). :func:`genlab.export.outputs.load_kind` imports them on
first use."""
