"""Training on a tiny model: masking, packing, accumulation, losses that fall, parameters that
change, registration with lineage, Ray Train with DDP, and clear errors before any work."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE
from model_store import ModelStore
from trainer.config import LoopConfig, TrainConfig, TrainConfigError
from trainer.data import IGNORE, as_row, collate, pack, tokenize_conversation
from trainer.loop import NaNLossError, accumulate_gradients, train
from trainer.objectives import PreferenceItem, PreferenceObjective, SFTObjective, forward_logits
from trainer.run import prepare_training, run_training

QUESTIONS = [
    "Say hi.",
    "Name a colour.",
    "Count to three.",
    "Greet me in French.",
    "What is 2+2?",
    "A fruit?",
]
ANSWERS = ["Hi!", "Blue.", "One two three.", "Bonjour !", "Four.", "Apple."]


def conversation(i: int, answer: str | None = None) -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTIONS[i]}, {"role": "assistant", "content": answer or ANSWERS[i]}]


@pytest.fixture
def tokenizer(tiny_model: Path):  # noqa: ANN201
    return AutoTokenizer.from_pretrained(tiny_model)


def load(tiny_model: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)


def test_labels_cover_exactly_the_assistant_turns(tokenizer) -> None:  # noqa: ANN001
    messages = [
        {"role": "system", "content": "Be brief."},
        *conversation(0),
        *conversation(1)[:1],
        {"role": "assistant", "content": "Red."},
    ]
    sample = tokenize_conversation(tokenizer, messages, max_length=1000)
    targets = tokenizer.decode(
        [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != IGNORE]
    )
    assert targets == "Hi!<|im_end|>\nRed.<|im_end|>\n"
    assert tokenize_conversation(tokenizer, messages, max_length=5).input_ids == sample.input_ids[:5]


def test_prompt_tokens_get_no_gradient(tiny_model: Path, tokenizer) -> None:  # noqa: ANN001
    model = load(tiny_model)
    sample = tokenize_conversation(tokenizer, conversation(0), 1000)
    batch = collate([as_row(sample)], tokenizer.pad_token_id)
    logits = forward_logits(model, batch)
    logits.retain_grad()
    from trainer.losses import token_logps

    logps, mask = token_logps(logits, batch["labels"])
    (-logps.sum()).backward()
    grad_norm_per_position = logits.grad[0, :-1].abs().sum(-1)
    assert torch.all(grad_norm_per_position[~mask[0]] == 0)  # prompt positions: no gradient at all
    assert torch.all(grad_norm_per_position[mask[0]] > 0)


def test_packed_samples_do_not_see_each_other(tiny_model: Path, tokenizer) -> None:  # noqa: ANN001
    model = load(tiny_model).eval()
    samples = [tokenize_conversation(tokenizer, conversation(i), 1000) for i in range(3)]
    (row,) = pack(samples, max_length=1000)
    with torch.no_grad():
        packed = forward_logits(model, collate([row], tokenizer.pad_token_id))[0]
        offset = 0
        for sample in sorted(samples, key=lambda s: len(s.input_ids), reverse=True):
            alone = forward_logits(model, collate([as_row(sample)], tokenizer.pad_token_id))[0]
            n = len(sample.input_ids)
            assert torch.allclose(packed[offset : offset + n], alone, atol=1e-5)
            offset += n


def sft_rows(tokenizer, n: int = 6):  # noqa: ANN001, ANN201
    return [as_row(tokenize_conversation(tokenizer, conversation(i % 6), 1000)) for i in range(n)]


def test_sft_loss_falls_and_parameters_change(tiny_model: Path, tokenizer) -> None:  # noqa: ANN001
    model = load(tiny_model)
    before = copy.deepcopy(model.state_dict())
    config = LoopConfig(epochs=20, micro_batch_size=6, learning_rate=1e-2, warmup_ratio=0.0)
    metrics = train(
        model, sft_rows(tokenizer), SFTObjective(tokenizer.pad_token_id), config, log=lambda _: None
    )
    assert metrics.steps == 20
    assert metrics.losses[-1] < 0.7 * metrics.losses[0]
    changed = [name for name, value in model.state_dict().items() if not torch.equal(value, before[name])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed and "lm_head.weight" in changed


def test_gradient_accumulation_4x1_matches_1x4(tiny_model: Path, tokenizer) -> None:  # noqa: ANN001
    rows = sft_rows(tokenizer, 4)  # rows of different lengths, so per-row means would differ
    objective = SFTObjective(tokenizer.pad_token_id)
    gradients, losses = [], []
    for micro_batches in ([rows[:1], rows[1:2], rows[2:3], rows[3:]], [rows]):
        model = load(tiny_model)
        losses.append(accumulate_gradients(model, micro_batches, objective))
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    assert abs(losses[0] - losses[1]) < 1e-5
    for name, grad in gradients[0].items():
        assert torch.allclose(grad, gradients[1][name], atol=1e-6), name
    assert any(grad.abs().sum() > 0 for grad in gradients[0].values())


def test_l2_to_init_keeps_weights_closer(tiny_model: Path, tokenizer) -> None:  # noqa: ANN001
    drift = []
    for l2 in (0.0, 50.0):
        model = load(tiny_model)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        config = LoopConfig(epochs=5, micro_batch_size=6, learning_rate=3e-3, l2_to_init=l2)
        train(model, sft_rows(tokenizer), SFTObjective(tokenizer.pad_token_id), config, log=lambda _: None)
        drift.append(sum(((v - initial[k]) ** 2).sum().item() for k, v in model.state_dict().items()))
    assert drift[1] < 0.5 * drift[0]


def preference_items(tokenizer) -> list[PreferenceItem]:  # noqa: ANN001
    from trainer.data import tokenize_completion

    items = []
    for i in range(6):
        prompt = conversation(i)[:1]
        chosen = [{"role": "assistant", "content": ANSWERS[i]}]
        rejected = [{"role": "assistant", "content": "No."}]
        items.append(
            PreferenceItem(
                tokenize_completion(tokenizer, prompt, chosen, 1000),
                tokenize_completion(tokenizer, prompt, rejected, 1000),
            )
        )
    return items


@pytest.mark.parametrize("method", ["dpo", "ipo", "slic", "copg"])
def test_preference_training_widens_the_margin(tiny_model: Path, tokenizer, method: str) -> None:  # noqa: ANN001
    model = load(tiny_model)
    config = TrainConfig(
        dataset="x@1",
        method=method,
        epochs=10,
        micro_batch_size=6,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        beta=0.5,
        sft_weight=0.5 if method == "dpo" else 0.0,
    )
    objective = PreferenceObjective(config, tokenizer.pad_token_id)
    items = preference_items(tokenizer)
    objective.fill_reference(model, items)
    with torch.no_grad():
        chosen, rejected, _ = objective.policy_logps(model, items)
    # The reference is the starting policy: cached values equal a fresh computation.
    assert torch.allclose(torch.tensor([i.ref_chosen for i in items]), chosen.float(), atol=1e-4)
    metrics = train(model, items, objective, config.loop, log=lambda _: None)
    assert metrics.losses[-1] < metrics.losses[0]
    with torch.no_grad():
        new_chosen, new_rejected, _ = objective.policy_logps(model, items)
    assert (new_chosen - new_rejected).mean() > (chosen - rejected).mean() + 1.0


def test_nan_loss_stops_training(tiny_model: Path, tokenizer) -> None:  # noqa: ANN001
    class Broken(SFTObjective):
        def loss_sum(self, model, rows):  # noqa: ANN001, ANN201
            return super().loss_sum(model, rows) * float("nan")

    with pytest.raises(NaNLossError, match="loss is nan at step 0"):
        train(
            load(tiny_model),
            sft_rows(tokenizer),
            Broken(tokenizer.pad_token_id),
            LoopConfig(),
            log=lambda _: None,
        )


def register_datasets(registry: Registry) -> None:
    messages = pa.array([conversation(i) for i in range(6)], MESSAGES_TYPE)
    registry.write("tiny-sft", pa.table({"messages": messages}), kind="sft")
    prompts = pa.array([conversation(i)[:1] for i in range(6)], MESSAGES_TYPE)
    chosen = pa.array([[conversation(i)[1]] for i in range(6)], MESSAGES_TYPE)
    rejected = pa.array([[{"role": "assistant", "content": "No."}]] * 6, MESSAGES_TYPE)
    registry.write(
        "tiny-pref", pa.table({"prompt": prompts, "chosen": chosen, "rejected": rejected}), kind="preference"
    )


def test_train_registers_a_loadable_checkpoint_with_lineage(
    tiny_model: Path, registry: Registry, tmp_path: Path
) -> None:
    register_datasets(registry)
    store = ModelStore(tmp_path / "models")
    config = TrainConfig(
        model=str(tiny_model),
        dataset="tiny-sft@1",
        output="tiny-expert",
        epochs=3,
        micro_batch_size=2,
        learning_rate=1e-3,
    )
    result = run_training(prepare_training(config, registry, store), store, log=lambda _: None)
    record = store.record("tiny-expert")
    assert record["kind"] == "sft"
    assert record["lineage"]["datasets"] == ["tiny-sft@1"]
    assert record["lineage"]["base_model"].startswith(f"{tiny_model}#")
    assert record["lineage"]["metrics"]["steps"] == result.metrics["steps"] > 0
    trained = AutoModelForCausalLM.from_pretrained(result.path)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not torch.equal(trained.lm_head.weight, base.lm_head.weight)
    assert AutoTokenizer.from_pretrained(result.path).chat_template is not None


def test_inputs_are_checked_before_any_work(tiny_model: Path, registry: Registry, tmp_path: Path) -> None:
    register_datasets(registry)
    store = ModelStore(tmp_path / "models")
    with pytest.raises(
        TrainConfigError, match="tiny-pref@1 is of kind 'preference'; sft trains on kind 'sft'"
    ):
        prepare_training(TrainConfig(model=str(tiny_model), dataset="tiny-pref@1"), registry, store)
    no_tokenizer = tmp_path / "bare"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text((tiny_model / "config.json").read_text())
    with pytest.raises(TrainConfigError, match="has no tokenizer"):
        prepare_training(TrainConfig(model=str(no_tokenizer), dataset="tiny-sft@1"), registry, store)
    from datasets_registry import RegistryError

    with pytest.raises(RegistryError, match="no version 9"):
        prepare_training(TrainConfig(model=str(tiny_model), dataset="tiny-sft@9"), registry, store)
    assert store.list() == []


def test_ray_train_ddp_two_workers(
    tiny_model: Path, registry: Registry, tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two DDP workers, each on half of the 6 pairs, end with the same weights as each other and
    as one process training on all 6 at once: the gradients were averaged, not just the data split."""
    import trainer.run

    register_datasets(registry)
    store = ModelStore(tmp_path / "models")
    ranks_dir = tmp_path / "ranks"
    ranks_dir.mkdir()

    def worker_keeping_its_weights(loop_config: dict) -> None:
        """The real worker; each rank also saves its final weights (a local function, so Ray
        pickles it by value and the workers need not import this test module)."""
        import ray.train
        import torch

        import trainer.run as run

        real_train = run.train

        def train_and_keep(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            metrics = real_train(model, *args, **kwargs)
            rank = ray.train.get_context().get_world_rank()
            weights = {k: v.detach().clone() for k, v in getattr(model, "module", model).state_dict().items()}
            torch.save(weights, f"{ranks_dir}/rank{rank}.pt")
            return metrics

        run.train = train_and_keep
        run._ray_worker(loop_config)

    monkeypatch.setattr(trainer.run, "_ray_worker", worker_keeping_its_weights)
    common = {"model": str(tiny_model), "dataset": "tiny-pref@1", "method": "dpo", "epochs": 4,
              "learning_rate": 3e-3}  # fmt: skip
    ddp = TrainConfig(**common, output="ddp-expert", num_workers=2, micro_batch_size=3, torch_threads=1)
    result = run_training(prepare_training(ddp, registry, store), store, log=lambda _: None)
    assert result.metrics["steps"] == 4
    assert result.metrics["last_loss"] < result.metrics["first_loss"]
    single = TrainConfig(**common, output="single-expert", micro_batch_size=6)  # the full batch per step
    reference = run_training(prepare_training(single, registry, store), store, log=lambda _: None)
    assert reference.metrics["steps"] == 4

    rank0, rank1 = (torch.load(ranks_dir / f"rank{r}.pt") for r in (0, 1))
    saved = AutoModelForCausalLM.from_pretrained(result.path).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    one_process = AutoModelForCausalLM.from_pretrained(reference.path).state_dict()
    assert rank0.keys() == rank1.keys() == saved.keys()
    for name, weight in rank0.items():
        assert torch.equal(weight, rank1[name]), f"{name}: the workers' weights differ"
        assert torch.equal(weight, saved[name]), f"{name}: rank 0 saved other weights"
        # Padding and summation order differ between the runs: float noise, far below an update.
        assert torch.allclose(weight, one_process[name], rtol=0, atol=1e-4), (
            f"{name}: DDP and the single-process run differ by {(weight - one_process[name]).abs().max():.2e}"
        )
    assert any(not torch.equal(rank0[name], base[name]) for name in rank0), "training changed nothing"


def test_cli_train_sft(tiny_model: Path, tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    register_datasets(Registry(reg))
    config = tmp_path / "sft.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model),
                "dataset": "tiny-sft@1",
                "output": "cli-expert",
                "epochs": 2,
                "micro_batch_size": 3,
            }
        )
    )
    env = {**os.environ, "ASSAY_REGISTRY": str(reg), "ASSAY_HOME": str(tmp_path / "home")}
    assay = str(Path(sys.executable).parent / "assay")
    result = subprocess.run(
        [assay, "train", "sft", str(config), "--set", "learning_rate=0.001"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "registered model cli-expert" in result.stdout
    shown = subprocess.run([assay, "models", "show", "cli-expert"], capture_output=True, text=True, env=env)
    assert '"learning_rate": 0.001' in shown.stdout and "tiny-sft@1" in shown.stdout
    wrong = subprocess.run([assay, "train", "dpo", str(config)], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "trains on kind 'preference'" in wrong.stderr
