"""Autoencoder families, one file each, found by name in the registry.

    model = models.build(config.model, image_shape, pixel_mean)
    outputs = model.apply({"params": params}, x, rngs=models.rngs(config.model, key))
    outputs["reconstruction"], outputs["code"], ...

See ``registry.py`` for the contract a family keeps. To add one, write its module
(a ``Family`` passed to ``registry.register``) and import it below.
"""

from aejax.models.registry import (Export, Family, activation_bytes, batched, build, compiled_apply,
                                   default_config, get, init_variables,
                                   largest_activation_bytes, names, register, rngs, validate)

# The families that ship with aejax; importing a module registers it.
from aejax.models import (contractive, conv, mlp, ratedistortion, topk, vae,  # noqa: E402,F401
                          vqvae)

__all__ = ["Export", "Family", "activation_bytes", "batched", "build", "compiled_apply", "default_config", "get",
           "init_variables", "largest_activation_bytes", "names", "register", "rngs",
           "validate"]
