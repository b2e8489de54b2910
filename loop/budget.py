"""Hard caps on teacher tokens, money and accepted samples.

Before a call, a request reserves its worst case (exact prompt tokens + max_tokens); a
request whose reservation could push spending past a cap is not sent. After the call the
reservation settles to the actual usage. Spending is kept in the run store's ledger, so
a resumed run sees what was already spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from loop.config import BudgetConfig


@dataclass
class Spend:
    tokens: int = 0
    money: float = 0.0
    samples: int = 0


class Budget:
    def __init__(self, cfg: BudgetConfig, spent: Spend | None = None):
        self.cfg = cfg
        self.spent = spent or Spend()
        self.reserved = Spend()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.cfg.price_prompt_per_1k
                + completion_tokens * self.cfg.price_completion_per_1k) / 1000.0

    def reserve(self, prompt_tokens: int, max_tokens: int) -> bool:
        """Reserve a request's worst case; False (and nothing reserved) if it could overshoot."""
        tokens = prompt_tokens + max_tokens
        money = self.cost(prompt_tokens, max_tokens)
        if self.spent.tokens + self.reserved.tokens + tokens > self.cfg.tokens:
            return False
        if self.cfg.money is not None and self.spent.money + self.reserved.money + money > self.cfg.money:
            return False
        self.reserved.tokens += tokens
        self.reserved.money += money
        return True

    def settle(self, reserved_prompt: int, reserved_max: int, prompt_tokens: int,
               completion_tokens: int) -> float:
        """Release a reservation and record actual usage; returns the request's cost."""
        self.reserved.tokens -= reserved_prompt + reserved_max
        self.reserved.money -= self.cost(reserved_prompt, reserved_max)
        cost = self.cost(prompt_tokens, completion_tokens)
        self.spent.tokens += prompt_tokens + completion_tokens
        self.spent.money += cost
        return cost

    def release(self, reserved_prompt: int, reserved_max: int) -> None:
        """Give back a reservation whose call never happened."""
        self.reserved.tokens -= reserved_prompt + reserved_max
        self.reserved.money -= self.cost(reserved_prompt, reserved_max)

    def samples_left(self) -> int:
        return max(0, self.cfg.samples - self.spent.samples)

    def add_samples(self, n: int) -> None:
        if n > self.samples_left():
            raise ValueError(f"accepting {n} samples would pass the cap: {self.samples_left()} left")
        self.spent.samples += n

    def exhausted(self, min_request_tokens: int) -> bool:
        """True when no request of the smallest useful size fits, or no sample may be accepted."""
        return (self.samples_left() == 0
                or self.spent.tokens + min_request_tokens > self.cfg.tokens
                or (self.cfg.money is not None
                    and self.spent.money + self.cost(0, min_request_tokens) > self.cfg.money))
