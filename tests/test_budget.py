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


class FlakyTeacher:
    """Answers with any usage up to max_tokens; fails part-way through a batch when told to."""

    name = "flaky"

    def __init__(self, plan):
        self.plan = plan  # per call: (completion fractions, index to fail at or None)

    def prompt_tokens(self, messages):
        return len(messages[0]["content"])

    def generate(self, requests):
        from loop.errors import TeacherError
        from loop.records import GenResult

        fracs, fail_at = self.plan.pop(0) if self.plan else ([1.0], None)
        out = []
        for i, req in enumerate(requests):
            if fail_at is not None and i == fail_at:
                raise TeacherError("server fault", partial=out)
            used = int(req.max_tokens * fracs[i % len(fracs)])
            out.append(GenResult(req.id, "x" * used, self.prompt_tokens(req.messages), used,
                                 "length" if used == req.max_tokens else "stop", 0.0))
        return out


@settings(max_examples=60, deadline=None)
@given(cap=st.integers(50, 3000), money=st.one_of(st.none(), st.floats(0.01, 2.0)),
       rounds=st.lists(st.tuples(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 400)), min_size=1,
                                          max_size=8),
                                 st.lists(st.floats(0, 1), min_size=1, max_size=4),
                                 st.one_of(st.none(), st.integers(0, 7)),
                                 st.booleans()), max_size=6))
def test_spending_stays_under_every_cap_through_failures_and_resumes(tmp_path_factory, cap, money, rounds):
    """Random request sizes, partial usage, server faults part-way and resumes (a new Budget from the
    store's ledger): tokens and money spent never pass their caps."""
    from loop.errors import TeacherError
    from loop.records import GenRequest
    from loop.stages import generate
    from loop.store import RunStore

    cfg = BudgetConfig(tokens=cap, money=money, price_prompt_per_1k=0.5, price_completion_per_1k=2.0)
    store = RunStore(tmp_path_factory.mktemp("b") / "store.sqlite")
    budget = Budget(cfg, store.spent("r"))
    for rnd, (sizes, fracs, fail_at, resume) in enumerate(rounds):
        if resume:  # the process died: a new one reads what was spent from the store
            budget = Budget(cfg, store.spent("r"))
        reqs = [GenRequest(messages=[{"role": "user", "content": "p" * p + str(rnd) + str(i)}], max_tokens=m,
                           temperature=0.7, top_p=1.0, seed=i) for i, (p, m) in enumerate(sizes)]
        teacher = FlakyTeacher([(fracs, fail_at)])
        try:
            generate(teacher, reqs, budget, store, "r", rnd, use_cache=False)
        except TeacherError:
            pass
        spent = store.spent("r")
        assert spent.tokens <= cap and budget.spent.tokens == spent.tokens
        assert money is None or spent.money <= money + 1e-9
        assert budget.reserved.tokens == 0  # every reservation settled or released
    store.close()
