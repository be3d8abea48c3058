"""Model families; importing this package registers every family in :data:`genlab.core.MODELS`."""

from genlab.models import autoregressive, diffusion, flow, gan, gpt, rnn, ssvae, vae  # noqa: F401
