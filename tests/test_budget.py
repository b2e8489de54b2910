from hypothesis import given, settings
from hypothesis import strategies as st

from loop.budget import Budget
from loop.config import BudgetConfig


def test_reserve_refuses_what_could_overshoot():
    b = Budget(BudgetConfig(tokens=1000))
    assert b.reserve(100, 400)
    assert b.reserve(100, 400)
    assert not b.reserve(100, 1)  # 1001 > 1000
    b.settle(100, 400, 100, 50)
    assert b.spent.tokens == 150
    assert not b.reserve(100, 600)  # 150 spent + 500 still reserved + 700 > 1000
    assert b.reserve(100, 250)  # exactly 1000
    assert b.spent.tokens + b.reserved.tokens == 1000


def test_money_cap_uses_prices():
    b = Budget(BudgetConfig(tokens=10**9, money=1.0, price_prompt_per_1k=0.5, price_completion_per_1k=1.0))
    assert b.reserve(1000, 500)  # 0.5 + 0.5 = 1.0
    assert not b.reserve(1, 0)
    cost = b.settle(1000, 500, 1000, 100)
    assert abs(cost - 0.6) < 1e-9 and abs(b.spent.money - 0.6) < 1e-9


def test_release_and_samples():
    b = Budget(BudgetConfig(tokens=100, samples=3))
    assert b.reserve(50, 50)
    b.release(50, 50)
    assert b.reserved.tokens == 0 and b.reserve(50, 50)
    b.add_samples(3)
    assert b.samples_left() == 0 and b.exhausted(1)


@settings(max_examples=200, deadline=None)
@given(cap=st.integers(1, 5000), calls=st.lists(st.tuples(st.integers(0, 800), st.integers(1, 800),
                                                            st.floats(0, 1)), max_size=40))
def test_spent_never_exceeds_cap(cap, calls):
    b = Budget(BudgetConfig(tokens=cap))
    for prompt, max_tokens, frac in calls:
        if b.reserve(prompt, max_tokens):
            b.settle(prompt, max_tokens, prompt, int(max_tokens * frac))
        assert b.spent.tokens + b.reserved.tokens <= cap
