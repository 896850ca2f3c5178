"""optax-clr: cyclical learning rates and compiled LR range tests for JAX."""

__version__ = "0.1.0"
