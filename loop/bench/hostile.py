"""A corpus of bad input: configs, data files and teacher replies, each with how it must be handled.

Bad configs and data files go through the CLI (`loop run --dry-run`) and must end in a
clean error that names the key, file or line, never a traceback (a data file marked None, such
as a spreadsheet's CSV with a byte-order mark, must be read). Hostile teacher replies go
through the same parsing, checks and filters as a real round and must end as counted
rejections, nothing accepted and nothing raised. The tests and `loop bench reliability` both
use this corpus.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

LABELS = ("negative", "neutral", "positive")
# real templates, so a bad value gets as far as it would in a real project (the dry run renders prompts)
PROMPTS = json.dumps(str(Path(__file__).resolve().parents[2] / "prompts" / "classify"))  # quoted for YAML

# name: (config text, what the error must say)
CONFIGS = {
    "unknown key": ("budget:\n  tokenz: 3\n", "unknown key 'tokenz'"),
    "unknown section": ("budgett:\n  tokens: 3\n", "unknown key 'budgett'"),
    "wrong type": ("budget:\n  tokens: lots\n", "budget.tokens: expected int"),
    "zero budget": ("budget:\n  tokens: 0\n", "budget.tokens: must be > 0"),
    "negative samples": ("budget:\n  samples: -5\n", "budget.samples: must be > 0"),
    "money without prices": ("budget:\n  money: 3.0\n", "budget.money: a money cap needs"),
    "bad strategy": ("generation:\n  strategy: psychic\n", "generation.strategy: must be"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
    "not yaml": ("budget: [unclosed\n", "not valid YAML"),
    "missing prompts": ("task:\n  prompts: /nonexistent/prompts\n", "not found"),
    "codegen with encoder": ("task:\n  name: codegen\n  labels: [pass, fail]\n", "student.name"),
    "teacher never down": ("teacher:\n  backend: openai\n  base_urls: [http://127.0.0.1:9/v1]\n"
                           "  down_after: 0\n", "teacher.down_after: must be >= 1"),
    "labels as lists": ("task:\n  labels: [[negative], [positive]]\n",
                        "task.labels[0]: expected str, got list"),
    "splits as lists": ("filters:\n  contamination_splits: [[test]]\n",
                        "filters.contamination_splits[0]: must be one of"),
    "labels as numbers": (f"task:\n  labels: [1, 2, 3]\n  prompts: {PROMPTS}\n",
                          "task.labels[0]: expected str"),
    "negative exemplars": (f"generation:\n  exemplars: -1\ntask:\n  prompts: {PROMPTS}\n",
                           "generation.exemplars: must be >= 1"),
    "negative contrasts": (f"generation:\n  contrasts: -3\ntask:\n  prompts: {PROMPTS}\n",
                           "generation.contrasts: must be >= 0"),
    "unwritable run folder": (f"run:\n  dir: /dev/null/runs\ntask:\n  prompts: {PROMPTS}\n",
                              "run.dir: cannot write"),
    "duplicate key": ("budget:\n  tokens: 5000\n  tokens: 6000\n",
                      "duplicate key 'tokens' at line 3 (first at line 2)"),
    "min above max": ("task:\n  min_chars: 100\n  max_chars: 5\n",
                      "task.min_chars: must be <= task.max_chars"),
    "API key as the variable name": ("teacher:\n  backend: openai\n  base_urls: [http://127.0.0.1:9/v1]\n"
                                     "  api_key_env: sk-live-9f8e7d6c5b4a\n", "teacher.api_key_env"),
}


def rows(n: int) -> str:
    return "".join(json.dumps({"text": f"row {i} words here", "label": LABELS[i % 3]}) + "\n"
                   for i in range(n))


def _csv_with_bom(folder: Path) -> Path:
    """What a spreadsheet's "CSV UTF-8" export writes: a byte-order mark before the header."""
    path = folder / "data.csv"
    body = "text,label\n" + "".join(f"row {i} words here,{LABELS[i % 3]}\n" for i in range(30))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    return path


def _long_line(megabytes: int):
    """A writer of 30 good rows, then one row `megabytes` long (written in pieces, never held whole)."""
    def write(folder: Path) -> Path:
        path = folder / "data.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(rows(30) + '{"text": "')
            for _ in range(megabytes):
                fh.write("w " * 500_000)
            fh.write('", "label": "neutral"}\n')
        return path
    return write


# name: (file content or a function writing the file into a folder, what the error must say; None: accepted)
DATA = {
    "empty file": (b"", "no rows"),
    "wrong encoding": ("caf\u00e9 row\n".encode("latin-1") * 3, "UTF-8"),
    "bad json line": (rows(5).encode() + b"{not json\n", ":6"),
    "missing column": (rows(5).encode() + b'{"text": "no label"}\n', ":6"),
    "label not in set": (rows(5).encode() + json.dumps({"text": "x y", "label": "furious"}).encode() + b"\n",
                         "furious"),
    "CSV with a byte-order mark": (_csv_with_bom, None),
    "a 10 MB line": (_long_line(10), "data.jsonl:31: record longer than"),
    "a 100 MB line": (_long_line(100), "data.jsonl:31: record longer than"),
}


def cli(main, *args: str):
    """`main` (the `loop` command group, passed in by its caller) invoked as a user would."""
    from click.testing import CliRunner

    return CliRunner().invoke(main, list(args))


def config_handled(text: str, message: str, folder: Path, main) -> tuple[bool, str]:
    path = folder / "bad.yaml"
    path.write_text(text)
    # a case about the run folder keeps its own; the others write under the temporary folder
    own_dir = text.startswith("run:") or "\nrun:" in text
    res = cli(main, "run", "--dry-run", "--config", str(path),
              *([] if own_dir else ["--set", f"run.dir={folder}/runs"]))
    ok = res.exit_code == 1 and message in res.output and "Traceback" not in res.output \
        and isinstance(res.exception, SystemExit) and "9f8e7d6c5b4a" not in res.output  # no key echoed
    return ok, res.output


def data_handled(content, message: str | None, folder: Path, main) -> tuple[bool, str]:
    """A bad file must end in a DataError saying `message`; a file with message None must be accepted."""
    if callable(content):
        path = content(folder)
    else:
        path = folder / "data.jsonl"
        path.write_bytes(content)
    res = cli(main, "run", "--dry-run", "--set", f"data.source={path}", "--set", f"run.dir={folder}/runs",
              "--set", "data.train_size=3", "--set", "data.dev_size=2", "--set", "data.test_size=1")
    if message is None:
        return res.exit_code == 0 and "per round" in res.output, res.output
    ok = res.exit_code == 1 and "DataError" in res.output and message in res.output \
        and "Traceback" not in res.output
    return ok, res.output


def replies(task: str, echo: str, labels: list[str]) -> dict[str, str]:
    """Hostile replies to a request whose prompt is `echo`, for a text task or a code task."""
    code = task != "classify"
    key = "code" if code else "text"
    good_label = labels[0]

    def sample(value: str, label: str = good_label) -> str:
        item = {"intent": label, "code": value} if code else {"text": value, "label": label}
        return json.dumps({"samples": [item]})

    out = {
        "empty": "",
        "truncated JSON": sample("def f(x):\n    return x + 1\n" if code
                                 else "I really love this phone")[:24],
        "wrong label": sample("def f(x):\n    return x\n" if code else "what a lovely day it is", "furious"),
        "prompt echo": echo,
        "1 MB of text": "lorem ipsum " * 90_000,
        "1 MB sample": sample(("x = 1\n" if code else "word ") * 200_000),
        "control characters": sample("def f(x):\n    return '\x1b[31m\x00'\n" if code
                                     else "great \x00 day \x1b[31mred\x07"),
        "deep nesting": "[" * 5_000,  # under the size bound: the parser itself must cope
        "not an object": json.dumps([1, 2, 3]),
        "wrong language": (sample("function f(x) {\n  return x + 1;\n}\n") if code
                           else "Voici trois exemples de tweets, mais sans JSON : j'adore, je déteste, bof."),
        "wrong key": json.dumps({"samples": [{key + "_": "value", "label": good_label}]}),
        # poison that once crashed the round, and, stored, every resumed attempt of it
        "nesting in a sample": '{"samples": [{"' + key + '": ' + "[" * 1500,
        "huge integer": (sample("def f(x):\n    return x\n" if code else "a fine day")[:-3]
                         + ', "n": ' + "9" * 4400 + "}]}"),
        "lone surrogate": sample("def f(x):\n    return '\ud800'\n" if code else "a fine day \ud800 indeed"),
        "unary chain": sample("def f(x):\n    return " + "-" * 4000 + "1\n" if code else "-" * 4000),
        "bidi override": sample("def f(x):\n    return x  # \u202e)x(f nruter\n" if code
                                else "a fine \u202eyad"),
        "only invisible characters": sample("\u200b\u200d\ufeff\u2060" * 10),
    }
    return out


def screen_reply(task, text: str, req, known, evaluation, cfg) -> list:
    """Parse, verify and filter one reply as a round does; returns its candidates."""
    from loop.records import GenResult
    from loop.stages import screen_candidates

    res = GenResult(request_id=req.id, text=text, prompt_tokens=10, completion_tokens=req.max_tokens,
                    finish_reason="stop", latency_s=0.0)
    return screen_candidates([(req, res)], task, known, evaluation, cfg, samples_left=100)


def reply_handled(cands: list) -> bool:
    """Counted rejections only: every candidate rejected with a reason, none accepted."""
    return bool(cands) and all(c.verdict == "rejected" and c.reason for c in cands)


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="loop-hostile-"))


def run_corpus(cfg, main) -> dict:
    """Every bad config, data file and hostile reply of the corpus; how many were handled, by kind. `main` is
    the `loop` command group the bad configs and files are run through."""
    from loop.components import build_task
    from loop.embedder import SentenceEmbedder
    from loop.filters import Reference
    from loop.plan import plan_random

    out: dict = {"configs": [], "data": [], "replies": []}
    folder = tmpdir()
    for name, (text, message) in CONFIGS.items():
        (folder / name).mkdir()
        out["configs"].append({"name": name,
                               "handled": config_handled(text, message, folder / name, main)[0]})
    for name, (content, message) in DATA.items():
        (folder / f"data-{name}").mkdir()
        out["data"].append({"name": name,
                            "handled": data_handled(content, message, folder / f"data-{name}", main)[0]})
        shutil.rmtree(folder / f"data-{name}", ignore_errors=True)  # the long-line files are 10 and 100 MB
    task = build_task(cfg)
    splits = task.load_splits()
    embedder = SentenceEmbedder(cfg.filters.embedder)
    req = plan_random(splits["train"], task, cfg, 1)[0]
    known = Reference(embedder, splits["train"] + splits["dev_mine"])
    evaluation = Reference(embedder, splits["dev_stop"] + splits["test"])
    echo = "\n".join(m["content"] for m in req.messages)
    for name, text in replies(cfg.task.name, echo, task.labels).items():
        try:
            cands = screen_reply(task, text, req, known, evaluation, cfg)
            handled, reasons = reply_handled(cands), sorted({c.reason for c in cands})
        except Exception as exc:  # noqa: BLE001 -- an exception here is the failure being counted
            handled, reasons = False, [f"raised {type(exc).__name__}"]
        out["replies"].append({"name": name, "handled": handled, "reasons": reasons})
    return out
