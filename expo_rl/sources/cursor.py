"""A resumable position in an endlessly repeated, per-epoch shuffled sequence of unit indices."""

from __future__ import annotations

import random
from typing import Any


class Cursor:
    """Hands out unit indices ``0..n-1`` in a seeded order, reshuffled every epoch.

    The order of epoch ``e`` depends only on ``(seed, e)``, so ``(epoch, position)`` is the whole
    state: a resumed run continues with exactly the indices the uninterrupted run would use.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True) -> None:
        if n <= 0:
            raise ValueError("a data source needs at least one unit (question, sample or pair)")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.position = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        order = list(range(self.n))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[int]:
        """The next ``k`` indices (wrapping into new epochs as needed)."""
        out = []
        while len(out) < k:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._make_order()
            step = min(k - len(out), self.n - self.position)
            out.extend(self._order[self.position:self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("n", self.n) != self.n:
            raise ValueError(f"checkpoint data position was saved for {state['n']} units, this run "
                             f"has {self.n}: the data set or its filters changed since the checkpoint")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._make_order()


class CursorState:
    """Checkpoint state of a source whose only resumable state is its ``cursor`` (a mixin)."""

    cursor: Cursor

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor.load_state_dict(state["cursor"])
