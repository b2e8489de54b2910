"""Causal-LM student for code generation: a small pretrained LM (SmolLM2-135M-Instruct by
default) fine-tuned with LoRA (peft).

An example's text is `prompt PAIR_SEP completion` (see tasks/codegen.py): `fit` trains on
the completion given the prompt (loss on completion tokens only), `sample` completes
prompts. Every `fit` starts from the pretrained weights with a fresh adapter and runs a
fixed number of optimizer steps (`student.steps`), so students trained on different data
have had exactly the same amount of training.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from loop.assets import resolve_model
from loop.data import pair_sides
from loop.embedder import mean_pool
from loop.errors import ConfigError
from loop.index import normalize
from loop.options import Component, option
from loop.records import Example
from loop.students.base import TrainingOptions

if TYPE_CHECKING:
    from loop.config import StudentConfig

log = logging.getLogger(__name__)
# where a completed function ends (the usual HumanEval stop sequences)
STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ", "\n```")


INSTRUCTION = ("Complete this Python function. Reply with the whole function in one code block.\n\n"
               "```python\n{prompt}```")


def cut(completion: str) -> str:
    """The completion up to the first stop sequence (the end of the function body)."""
    text = "\n" + completion  # a stop at the very start counts too
    end = len(text)
    for stop in STOPS:
        i = text.find(stop)
        if i != -1:
            end = min(end, i)
    return text[1:end].rstrip() if end else ""


class CausalLMStudent(Component):

    kinds = ("generator",)

    @dataclass
    class Options(TrainingOptions):
        steps: int = option(0, "optimizer steps per fit, whatever the data size (0: epochs x batches)", ge=0)
        lora_r: int = option(16, "LoRA rank (alpha is twice the rank)", ge=1)
        lora_layers: int = option(8, "LoRA on the top this many blocks (0: all); fewer train faster", ge=0)
        max_new_tokens: int = option(192, "most tokens of one sampled completion", ge=1)
        generate_batch: int = option(16, "sequences per generate() call", ge=1)

    def __init__(self, cfg: StudentConfig, labels: list[str]):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.path = resolve_model(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.base = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
        self.model = self.base  # the base model until the first fit adds an adapter
        self.steps_done = 0

    def frame(self, prompt: str) -> str:
        """What the model sees for a problem: a chat turn asking for the function, and the reply
        opened with the function's own header and docstring (so the model writes the body)."""
        if not self.tokenizer.chat_template:
            return prompt
        head = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": INSTRUCTION.format(prompt=prompt)}],
            tokenize=False, add_generation_prompt=True)
        # ends without the newline: the body's first token then carries it with the indentation, as in
        # ordinary code ("\n    return"), instead of a lone newline token the model would close the
        # block after
        return head + "```python\n" + prompt.rstrip()

    # -- training ---------------------------------------------------------------------------------
    def _encode(self, prompt: str, completion: str):
        tok = self.tokenizer
        p = tok(self.frame(prompt), add_special_tokens=False)["input_ids"]
        c = tok("\n" + completion.strip("\n").rstrip() + "\n```", add_special_tokens=False)["input_ids"]
        c.append(tok.eos_token_id)
        ids = (p + c)[-self.cfg.max_length:]
        labels = ([-100] * len(p) + c)[-self.cfg.max_length:]
        return ids, labels

    def _batch(self, rows: list[tuple[list[int], list[int]]]):
        """Left-padded ids, mask, positions and labels: every completion ends at the last position."""
        import torch

        width = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(i)) + i for i, _ in rows])
        labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in rows])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in rows])
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), labels

    def _loss(self, rows: list[tuple[list[int], list[int]]]):
        """Cross-entropy on completion tokens; logits are computed for the completion positions only."""
        import torch

        ids, mask, positions, labels = self._batch(rows)
        keep = int((labels != -100).sum(1).max()) + 1
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            logits_to_keep=keep).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, -keep + 1:].reshape(-1), ignore_index=-100)

    def fit(self, examples: list[Example]) -> None:
        """A fresh LoRA adapter on the pretrained weights, trained for `steps` optimizer steps.

        The adapter sits on the top `lora_layers` blocks only: backpropagation stops there,
        which roughly halves the cost of a step on a CPU.
        """
        import torch
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        pairs = [pair_sides(e.text) for e in examples]
        rows = [self._encode(p, c) for p, c in pairs if c.strip()]
        if not rows:
            raise ConfigError("student: the causal_lm student needs examples with completions "
                              "(prompt, solution)")
        torch.manual_seed(cfg.seed)
        self._unwrap()
        layers = self.base.config.num_hidden_layers
        top = list(range(max(0, layers - cfg.lora_layers), layers)) if cfg.lora_layers else None
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.05, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"], layers_to_transform=top)
        self.model = get_peft_model(self.base, lora)
        steps = cfg.steps or cfg.epochs * ((len(rows) + cfg.batch_size - 1) // cfg.batch_size)
        opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=cfg.learning_rate)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
        rng = random.Random(cfg.seed)
        order: list[int] = []
        self.model.train()
        for step in range(steps):
            if len(order) < cfg.batch_size:  # epochs without a ragged tail: reshuffle and go on
                more = list(range(len(rows)))
                rng.shuffle(more)
                order += more
            batch, order = order[:cfg.batch_size], order[cfg.batch_size:]
            loss = self._loss([rows[i] for i in batch])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            if step % 5 == 0 or step == steps - 1:
                log.debug("step %d / %d loss %.4f", step, steps, loss.item())
        self.model.eval()
        self.steps_done = steps

    def _unwrap(self) -> None:
        """Drop the previous round's adapter: the base weights are untouched (LoRA adds, never edits)."""
        if self.model is not self.base:
            self.base = self.model.unload()
            self.model = self.base

    # -- inference ----------------------------------------------------------------------------------
    def _generate(self, prompts: list[str], max_new_tokens: int, temperature: float, n: int, seed: int,
                  stops: tuple[str, ...] = ()) -> list[list[str]]:
        """`n` continuations per prompt, in input order (batched by length)."""
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        torch.manual_seed(seed)
        per_call = max(1, self.cfg.generate_batch // n)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else \
            {"do_sample": False}
        if stops:
            sampling.update(stop_strings=list(stops), tokenizer=tok)
        results: dict[int, list[str]] = {}
        for start in range(0, len(order), per_call):
            idx = order[start:start + per_call]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                          pad_token_id=tok.pad_token_id, **sampling)
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(idx):
                results[i] = texts[j * n:(j + 1) * n]
        return [results[i] for i in range(len(prompts))]

    def sample(self, prompts: list[str], n: int = 1, temperature: float = 0.0,
               seed: int = 0) -> list[list[str]]:
        """`n` completions per prompt, cut at the end of the function (greedy when temperature is 0)."""
        outs = self._generate([self.frame(p) for p in prompts], self.cfg.max_new_tokens, temperature, n,
                              seed, STOPS)
        return [[cut(t).strip("\n") for t in texts] for texts in outs]

    def chat(self, messages: list[list[dict]], max_tokens: int, temperature: float,
             seed: int = 0) -> list[str]:
        """One reply per chat conversation (the student as its own reviser)."""
        prompts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                   for m in messages]
        return [texts[0] for texts in self._generate(prompts, max_tokens, temperature, 1, seed)]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled last hidden states, L2-normalised (the student's view of a prompt)."""
        import torch

        tok = self.tokenizer
        tok.padding_side = "right"
        vecs = []
        with torch.inference_mode():
            for start in range(0, len(texts), 16):
                enc = tok(texts[start:start + 16], return_tensors="pt", padding=True, truncation=True,
                          max_length=self.cfg.max_length, add_special_tokens=False)
                hidden = self.model(**enc, output_hidden_states=True).hidden_states[-1]
                vecs.append(mean_pool(hidden, enc["attention_mask"]).float().numpy())
        dim = self.base.config.hidden_size
        return normalize(np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32))

    def fingerprint(self) -> str:
        """A short digest of the trainable weights (names the reviser in the response cache)."""
        import hashlib

        h = hashlib.sha1(str(self.steps_done).encode())
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                h.update(name.encode() + p.detach().numpy().tobytes())
        return h.hexdigest()[:12]

    def predict(self, examples: list[Example]):
        raise ConfigError("student.name causal_lm: a generation student; use it with task.name codegen")

    def save(self, path: str) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
