"""`loop run --dry-run`: the cost forecast, before any teacher call."""

from conftest import HashEmbedder, ScriptedTeacher, TinyStudent

from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.forecast import describe, forecast
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.teachers.base import PromptCounter
from loop.tracking import Tracker


def test_forecast_counts_requests_and_bounds_tokens(tiny_config):
    cfg = tiny_config(**{"teacher.model": "no-such-model", "generation.targeted_requests": 5,
                         "generation.revise_requests": 3, "teacher.max_tokens": 100, "budget.tokens": 5000,
                         "loop.rounds": 4})
    task = ClassifyTask(cfg)
    f = forecast(cfg, task, load_splits(cfg))
    assert f.requests_per_round == 8
    assert f.worst_per_round == f.prompt_tokens_per_round + 8 * 100
    assert f.prompt_tokens_per_round > 8 * PromptCounter.PER_CHAT  # rendered prompts, not a guess
    assert f.rounds_affordable == min(4, 5000 // f.worst_per_round) and f.worst_total <= 5000
    assert any("cap pays for" in line for line in describe(f, cfg))
    none = forecast(tiny_config(**{"generation.strategy": "none"}), task, load_splits(cfg))
    assert none.requests_per_round == 0 and none.worst_total == 0


def test_forecast_with_several_completions_pays_the_prompt_once_where_the_back_end_can(tiny_config):
    base = {"teacher.model": "no-such-model", "generation.targeted_requests": 5,
            "generation.revise_requests": 3, "teacher.max_tokens": 100, "generation.completions": 3}
    task, splits = ClassifyTask(tiny_config(**base)), load_splits(tiny_config(**base))
    once = forecast(tiny_config(**base), task, splits)  # vllm: n
    single = forecast(tiny_config(**{**base, "generation.completions": 1}), task, splits)
    copies = forecast(tiny_config(**{**base, "teacher.backend": "transformers"}), task, splits)
    assert once.prompt_tokens_per_round == single.prompt_tokens_per_round
    assert once.worst_per_round == once.prompt_tokens_per_round + 8 * 3 * 100
    assert copies.prompt_tokens_per_round == 3 * once.prompt_tokens_per_round  # each copy pays its prompt
    assert "3 x max_tokens 100" in describe(once, tiny_config(**base))[0]


def test_forecast_uses_what_earlier_replies_cost(tiny_config, tmp_path):
    cfg = tiny_config(**{"teacher.model": "no-such-model", "loop.rounds": 1})
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("a", cfg.to_dict())
    parts = Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=ScriptedTeacher(),
                  embedder=HashEmbedder(), splits=load_splits(cfg), store=store,
                  tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))
    run_loop(cfg, parts, "a", tmp_path / "runs" / "a")
    f = forecast(cfg, parts.task, parts.splits, store)
    # the scripted teacher's replies are a few dozen words: far below max_tokens
    assert f.completion_share is not None and 0 < f.completion_share < 0.5
    assert f.prompt_tokens_per_round < f.expected_per_round < f.worst_per_round
    assert any("expected per round" in line for line in describe(f, cfg))
