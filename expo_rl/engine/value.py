"""PPO's value model V_psi (SPEC 2.4): a small head on the policy's final hidden states.

Design (chosen over a separate value network to keep one model, one optimiser, one
checkpoint and one forward pass):

- The head is a 2-layer MLP ``H -> H -> 1`` attached to the policy as the sub-module
  ``expo_value_head`` (so ``model.parameters()``, the optimiser, DDP and checkpoints include it;
  ``save_pretrained`` writes its weights next to the policy's, which a plain
  ``from_pretrained`` ignores with an "unused weights" notice).
- It reads the decoder's final hidden states **detached**: the value loss trains the head only,
  and the policy's gradient stays exactly the PPO gradient (eq. 15) whatever ``value_coef`` is.
  The cost is a critic that cannot reshape the features it reads (DeepSeekMath trains a full
  separate value model; swap :func:`attach_value_head` for one if a task needs it).
- Values are computed inside the policy's own forward (a forward hook on the decoder), so no
  second pass is needed, and under FSDP/ZeRO-3 the head runs while the parameters are gathered.

``values[:, t]`` is ``V(q, o_<t)``, the value of the state in which token t is chosen, i.e. the
head applied to the hidden state at position ``t - 1``, aligned with ``completion_logprobs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from expo_rl.policy.logprobs import unwrap

VALUE_HEAD_ATTR = "expo_value_head"


class ValueHead(nn.Module):
    """``V = w2 . tanh(W1 h + b1) + b2`` on a hidden state h [..., H] -> [...]."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.out.weight)  # V = 0 at the start: GAE begins as plain returns
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(hidden))).squeeze(-1)


def _decoder(model: nn.Module) -> nn.Module:
    inner = unwrap(model)
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if decoder is None:
        raise ValueError(f"{type(inner).__name__} has no get_decoder(): cannot read hidden states "
                         f"for the value head")
    return decoder


def find_value_head(model: nn.Module) -> ValueHead | None:
    return getattr(unwrap(model), VALUE_HEAD_ATTR, None)


def attach_value_head(model: nn.Module) -> ValueHead:
    """Add (once) a :class:`ValueHead` to ``model``, on its device and dtype; returns it.

    Call before building the optimiser (and before ``accelerator.prepare``).
    """
    head = find_value_head(model)
    if head is not None:
        return head
    inner = unwrap(model)
    embeddings = inner.get_input_embeddings()
    config = getattr(inner, "config", None)
    hidden_size = getattr(getattr(config, "get_text_config", lambda: config)(), "hidden_size", None)
    hidden_size = hidden_size or embeddings.embedding_dim
    weight = embeddings.weight
    head = ValueHead(hidden_size).to(device=weight.device, dtype=weight.dtype)
    setattr(inner, VALUE_HEAD_ATTR, head)
    return head


@dataclass
class ValueCapture:
    """Filled by :func:`capture_values` during the forward passes it wraps."""

    chunks: list[torch.Tensor] = field(default_factory=list)

    @property
    def values(self) -> torch.Tensor:
        """[B, T] values aligned with completion log-probs (position 0 gets 0)."""
        if not self.chunks:
            raise RuntimeError("no forward pass ran inside capture_values()")
        per_position = torch.cat(self.chunks, dim=0)
        return torch.cat([torch.zeros_like(per_position[:, :1]), per_position[:, :-1]], dim=1)


@contextmanager
def capture_values(model: nn.Module) -> Iterator[ValueCapture]:
    """Compute the value head on the decoder's last hidden states during every forward pass
    inside the block (several calls, e.g. row chunks, are concatenated along the batch)."""
    head = find_value_head(model)
    if head is None:
        raise ValueError("this loss needs a value model: call expo_rl.engine.step.prepare_model(model, "
                         "step_terms) (or value.attach_value_head) before building the optimiser")
    capture = ValueCapture()

    def hook(_module: nn.Module, _args: tuple, output: object) -> None:
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None:
            hidden = output[0]
        capture.chunks.append(head(hidden.detach()))

    handle = _decoder(model).register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
