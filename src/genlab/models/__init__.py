"""Model families; importing this package registers every family in :data:`genlab.core.MODELS`."""

from genlab.models import gan, vae  # noqa: F401
