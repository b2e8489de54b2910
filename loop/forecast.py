"""`loop run --dry-run`: what a run would cost, before any teacher call.

A round sends `generation.targeted_requests + generation.revise_requests` prompts (none
for strategy `none`), and with label agreement one short blind-labelling request per
candidate. Prompt sizes come from rendering a round's prompts on the real training data
(random exemplars: the targeted prompts have the same shape) and counting them with the
teacher's counter where it can count offline, else with the safe byte bound. Completion
tokens are bounded by `teacher.max_tokens`; the expected figure uses the completion share
seen in the run store's earlier responses of the same teacher, if there are any.
"""

from __future__ import annotations

from dataclasses import dataclass

from loop.config import Config
from loop.plan import plan_random
from loop.registry import TEACHERS
from loop.teachers.base import PromptCounter, takes_n


@dataclass
class Forecast:
    requests_per_round: int
    prompt_tokens_per_round: int
    worst_per_round: int  # prompt + max_tokens for every request
    expected_per_round: int
    completion_share: float | None  # seen completion / max_tokens in earlier responses, if any
    rounds: int
    rounds_affordable: int  # whole rounds the token cap pays for at the worst case
    worst_total: int
    expected_total: int
    agreement_per_round: int  # blind-labelling requests at most (one per candidate)


def _counter(cfg: Config) -> PromptCounter:
    """Exact counts with the teacher's own tokenizer where it loads offline, else the safe byte bound."""
    try:
        return PromptCounter(cfg.teacher.tokenizer or cfg.teacher.model)
    except Exception:  # noqa: BLE001 - a served model name, a hub id offline, ...: fall back to the bound
        return PromptCounter()


def forecast(cfg: Config, task, splits: dict, store=None) -> Forecast:
    g = cfg.generation
    rounds = cfg.loop.rounds
    reqs = [] if g.strategy == "none" else plan_random(splits["train"], task, cfg, 1)
    counter = _counter(cfg)
    once = takes_n(TEACHERS[cfg.teacher.backend])  # the prompt is paid once for n completions
    prompt = sum(counter.count(r.messages) * (1 if once else r.n) for r in reqs)
    completions = sum(r.max_tokens * r.n for r in reqs)
    worst = prompt + completions
    share = store.completion_share() if store is not None else None
    expected = prompt + int(completions * (share if share is not None else 1.0))
    agreement = len(reqs) * g.samples_per_request if cfg.filters.label_agreement else 0
    worst += agreement * (cfg.filters.agreement_max_tokens + 200)
    affordable = cfg.budget.tokens // worst if worst else rounds
    return Forecast(requests_per_round=len(reqs), prompt_tokens_per_round=prompt, worst_per_round=worst,
                    expected_per_round=expected, completion_share=share, rounds=rounds,
                    rounds_affordable=min(rounds, affordable),
                    worst_total=min(cfg.budget.tokens, worst * rounds),
                    expected_total=min(cfg.budget.tokens, expected * rounds) if rounds else 0,
                    agreement_per_round=agreement)


def describe(f: Forecast, cfg: Config) -> list[str]:
    n = cfg.generation.completions
    each = f"max_tokens {cfg.teacher.max_tokens}" if n == 1 else f"{n} x max_tokens {cfg.teacher.max_tokens}"
    lines = [f"per round: {f.requests_per_round} requests, ~{f.prompt_tokens_per_round} prompt tokens, "
             f"at most {f.worst_per_round} tokens (prompt + {each} each)"]
    if f.agreement_per_round:
        lines.append(f"  + up to {f.agreement_per_round} blind-labelling requests (label agreement)")
    if f.completion_share is not None:
        lines.append(f"expected per round: ~{f.expected_per_round} tokens (earlier replies used "
                     f"{f.completion_share:.0%} of max_tokens)")
    lines.append(f"{f.rounds} round(s): at most {f.worst_total} tokens of the {cfg.budget.tokens}-token cap; "
                 f"the cap pays for {f.rounds_affordable} whole round(s) at the worst case")
    if f.rounds_affordable < f.rounds:
        lines.append(f"  later rounds send only what still fits: about "
                     f"{cfg.budget.tokens // max(1, f.expected_per_round)} round(s) at the expected rate")
    if cfg.budget.money is not None:
        cost = (f.prompt_tokens_per_round * cfg.budget.price_prompt_per_1k
                + (f.worst_per_round - f.prompt_tokens_per_round) * cfg.budget.price_completion_per_1k) / 1000
        lines.append(f"money: at most {cost:.4f} per round; cap {cfg.budget.money}")
    return lines
