"""ExPO (SPEC section 3): self-explanations as positive samples, hint sources and diagnostics.

Modules: ``hints`` (hint-source registry), ``explanations`` (prompts, generation, judging,
JSONL cache), ``answer_format`` (answer formats, chain-of-thought/answer split), ``leaks``
(sentences that mention the given answer), ``bank`` (offline/online refresh schedule),
``scoring`` and ``diagnostics`` (Figure 2 NLL and Lemma 2 reachability). The ``exp_sft``
gradient coefficient is registered with the others in ``expo_rl.core.coefficients``. The training parts are data sources:
``expo_rl.sources.explanations`` (ExP-GRPO's ExP-SFT rows) and ``expo_rl.sources.expo_pairs``
(ExP-DPO pairs).
"""
