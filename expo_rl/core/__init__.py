"""Pure math: masked helpers, advantages, the gradient-coefficient registry, loss aggregation."""

from expo_rl.core import coefficients, variants  # noqa: F401  (registers the GRPO-family variants)
