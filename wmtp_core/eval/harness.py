"""`evaluate()`: generate n samples per problem, execute them in the sandbox, report pass@k.

Prompts: HumanEval is the standard code-completion benchmark (the model continues the function prompt);
MBPP and CodeContests get the training Alpaca prompt, built by the data pipeline's own prompt code
(`wmtp_core.data.prompt_parts` + `wmtp_core.data.template`) and shortened the same way to fit the context.
Problems flagged unreliable (their reference fails their tests) are excluded. Outputs in `out_dir`:
samples.jsonl (one row per sample), results.jsonl (sample + verdict), summary.json (pass@k and settings).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vendor.meta_llama.model import Transformer
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.eval.checkers import check_many
from wmtp_core.eval.generate import SamplingConfig, generate
from wmtp_core.eval.passk import mean_pass_at_k, pass_counts
from wmtp_core.eval.problems import Problem, load_problems
from wmtp_core.eval.reliability import excluded_task_ids
from wmtp_core.eval.sandbox import detect_isolation
from wmtp_core.eval.speculative import SpeculativeConfig, SpeculativeStats, speculative_generate
from wmtp_core.io import atomic_write_json, atomic_write_text

STOP_SEQUENCES: dict[str, tuple[str, ...]] = {
    "humaneval": ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"),
    "mbpp": ("\n### ",),
    "codecontests": ("\n### ",),
}


@dataclass
class EvalResult:
    dataset: str
    n: int
    ks: list[int]
    pass_at_k: dict[str, float]
    n_problems: int
    n_excluded: int
    n_samples: int
    n_passed: int
    samples_path: Path
    results_path: Path
    summary_path: Path
    generation: dict = field(default_factory=dict)
    speculative: bool = False  # which decoder ran: self-speculative (True) or plain

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def metrics(self) -> dict[str, float]:
        """pass@k and the numeric generation statistics (speculative: tokens per forward, acceptance per head)."""
        gen = {k: v for k, v in self.generation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        heads = {f"{k}_acceptance": v for k, v in self.generation.get("head_acceptance", {}).items()}
        return {**self.pass_at_k, **gen, **heads}


def load_model(model_dir: Path, device: str) -> tuple[Transformer, Tokenizer]:
    """The one place that loads a model dir for evaluation."""
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter

    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir, device=device)
    return adapter.model.eval(), adapter.tokenizer


def eval_prompt(problem: Problem, tokenizer: Tokenizer, max_prompt_tokens: int) -> str:
    """HumanEval: the function prompt. MBPP/CodeContests: the training prompt, shortened to fit."""
    if problem.source == "humaneval":
        return problem.tests["prompt"]
    from wmtp_core.data.prepare import prompt_candidates
    from wmtp_core.data.prompt_parts import PARTS_BY_SOURCE
    from wmtp_core.data.template import build_prompt as alpaca_prompt

    def fits(instruction: str, normalized_input: str) -> bool:
        return len(tokenizer.encode(alpaca_prompt(instruction, normalized_input), bos=True)) <= max_prompt_tokens

    prompt = ""
    for instruction, normalized_input in prompt_candidates(PARTS_BY_SOURCE[problem.source](problem.raw), fits):
        prompt = alpaca_prompt(instruction, normalized_input)
        if fits(instruction, normalized_input):
            break
    return prompt


def _prompt_ids(tokenizer: Tokenizer, prompt: str, max_prompt_tokens: int) -> list[int]:
    ids = tokenizer.encode(prompt, bos=True)
    return ids if len(ids) <= max_prompt_tokens else ids[:1] + ids[len(ids) - max_prompt_tokens + 1:]


def generate_samples(model: Transformer, tokenizer: Tokenizer, problems: list[Problem], n: int,
                     cfg: SamplingConfig, speculative: SpeculativeConfig | None = None, batch_size: int = 16
                     ) -> tuple[list[dict], dict]:
    """n samples per problem -> sample rows and generation statistics (speculative decoding when `speculative`
    is given)."""
    max_prompt = max(16, model.args.max_seq_len - cfg.max_new_tokens)
    stats, rows, n_tokens, start = SpeculativeStats(), [], 0, time.perf_counter()
    for p_index, problem in enumerate(problems):
        prompt = eval_prompt(problem, tokenizer, max_prompt)
        ids = _prompt_ids(tokenizer, prompt, max_prompt)
        for first in range(0, n, batch_size):
            size = min(batch_size, n - first)
            seeded = cfg.model_copy(update={"seed": cfg.seed + 1000003 * p_index + first})
            if speculative is not None:
                outs = speculative_generate(model, [ids] * size, tokenizer.eos_id, tokenizer.pad_id, seeded,
                                            tokenizer.decode, stats, speculative)
            else:
                outs = generate(model, [ids] * size, tokenizer.eos_id, tokenizer.pad_id, seeded, tokenizer.decode)
            for offset, out in enumerate(outs):
                n_tokens += len(out.tokens)
                rows.append({"task_id": problem.task_id, "sample_index": first + offset, "prompt": prompt,
                             "completion": out.text, "n_tokens": len(out.tokens),
                             "finish_reason": out.finish_reason})
    seconds = time.perf_counter() - start
    info = {"generated_tokens": n_tokens, "generation_s": seconds, "tokens_per_s": n_tokens / max(seconds, 1e-9)}
    if speculative is not None:
        info |= stats.to_dict() | {"draft_len": speculative.resolve(model.n_future),
                                   "adaptive": speculative.adaptive, "timed": speculative.timed}
    return rows, info


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def score_samples(samples: list[dict], problems: list[Problem], workers: int) -> list[dict]:
    """Execute every sample; returns the sample rows extended with status / passed / detail."""
    by_id = {p.task_id: p for p in problems}
    verdicts = check_many([(by_id[s["task_id"]], s["completion"]) for s in samples], workers=workers)
    return [s | {"status": v.status, "passed": v.passed, "detail": v.detail, "tests_passed": v.tests_passed,
                 "tests_total": v.tests_total} for s, v in zip(samples, verdicts)]


def select_problems(dataset: str, limit: int | None) -> tuple[list[Problem], list[str]]:
    """Reliable problems (the first `limit` of them) and the excluded task ids."""
    excluded = excluded_task_ids(dataset)
    problems = [p for p in load_problems(dataset) if p.task_id not in excluded]
    return (problems if limit is None else problems[:limit]), sorted(excluded)


def evaluate(model_dir: str | Path, dataset: str, n: int, ks: list[int], limit: int | None, out_dir: str | Path,
             temperature: float = 0.8, max_new_tokens: int = 256, seed: int = 0, device: str = "cpu",
             speculative: bool | None = None, top_p: float = 0.95, workers: int = 2, batch_size: int = 16,
             draft_len: int | None = None) -> EvalResult:
    """`speculative` None (default): self-speculative decoding when decoding is greedy and the model has extra
    heads (same outputs, fewer forwards); False: plain decoding; True: speculative or an error."""
    if speculative and temperature != 0.0:
        raise ValueError("--speculative decodes greedily: use temperature 0")
    out_dir = Path(out_dir)
    problems, excluded = select_problems(dataset, limit)
    model, tokenizer = load_model(Path(model_dir), device)
    if speculative is None:
        speculative = temperature == 0.0 and model.n_future > 1
    spec = SpeculativeConfig(draft_len=draft_len) if speculative else None
    cfg = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                         stop=STOP_SEQUENCES[dataset], seed=seed)
    torch.manual_seed(seed)
    samples, gen_info = generate_samples(model, tokenizer, problems, n, cfg, spec, batch_size)
    samples_path = atomic_write_text(out_dir / "samples.jsonl", _jsonl(samples))
    results = score_samples(samples, problems, workers)
    results_path = atomic_write_text(out_dir / "results.jsonl", _jsonl(results))
    pass_k = mean_pass_at_k(pass_counts(results).values(), ks)
    result = EvalResult(dataset, n, list(ks), pass_k, len(problems), len(excluded), len(results),
                        sum(r["passed"] for r in results), samples_path, results_path, out_dir / "summary.json",
                        gen_info, speculative)
    summary = result.to_dict() | {
        "model_dir": str(model_dir), "excluded_task_ids": excluded, "sampling": cfg.model_dump(),
        "sandbox_isolation": detect_isolation().name,
        "sandbox_filesystem": detect_isolation().filesystem,  # "host": an --allow-unisolated run
    }
    atomic_write_json(result.summary_path, summary)
    return result
