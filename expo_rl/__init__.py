"""expo-rl: RL post-training of reasoning LMs.

Every method is a composition of a data source, a reward function and a gradient-coefficient
function over one shared training step (DeepSeekMath appendix A.1; SPEC section 2), and ExPO
adds self-explanations as positive samples (SPEC section 3).
"""

__version__ = "0.1.0"
