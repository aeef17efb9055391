"""Training: the loss falls and weights change; ensemble relabelling; NaN stops training;
the model saves and loads as an HF folder; encoders pool."""

from pathlib import Path

import pytest
import torch
from rm_fixtures import synthetic_pairs

from reward_model.config import RMConfig, StageConfig
from reward_model.data import tokenize_pairs
from reward_model.model import RewardModel
from reward_model.score import RewardScorer, pair_segments, score_segments
from reward_model.train import apply_ensemble, train_stage
from trainer.config import LoopConfig
from trainer.loop import NaNLossError

CONFIG = RMConfig(datasets=["x@1"], max_length=64, row_length=128, log_every=1000)
STAGE = StageConfig(learning_rate=3e-3, pairs_per_step=8, micro_batch_pairs=4, epochs=6, warmup_ratio=0.0)


def test_training_lowers_the_loss_and_changes_weights(tiny_model: Path, tiny_tokenizer) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_model, seed=0)
    pairs, _ = tokenize_pairs(tiny_tokenizer, synthetic_pairs(24), 64)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    metrics = train_stage(
        model, pairs, STAGE, CONFIG, tiny_tokenizer.pad_token_id, packed=True, log=lambda _: None
    )
    losses = metrics["losses"]
    assert metrics["steps"] == 18 and metrics["pairs_trained"] == 24 * 6
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3  # the loss falls
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("score" in n for n in changed) and any("layers.0" in n for n in changed)
    assert metrics["fill"] > 0.7 and metrics["pairs_per_row"][1] > 1  # it trained on packed rows
    rewards = score_segments(model, pair_segments(pairs), tiny_tokenizer.pad_token_id, capacity=128)
    assert (rewards[0] > rewards[1]).float().mean() == 1.0  # it learned the preference


def test_each_stage_loop_has_its_own_schedule_and_the_run_settings() -> None:
    config = RMConfig(datasets=["x@1"], weight_decay=0.01, max_grad_norm=None, seed=5, log_every=3)
    stage1, stage2 = (config.stage_loop(s, gradient_accumulation=4) for s in (config.stage1, config.stage2))
    assert type(stage1) is LoopConfig  # the loop gets no dataset, model or method
    assert (stage1.learning_rate, stage2.learning_rate) == (4e-5, 3e-6)
    for loop in (stage1, stage2):
        # One loop item is one micro batch of packed rows; accumulation comes from the data.
        assert (loop.micro_batch_size, loop.gradient_accumulation) == (1, 4)
        assert (loop.weight_decay, loop.max_grad_norm, loop.seed, loop.log_every) == (0.01, None, 5, 3)


def test_a_step_holds_about_pairs_per_step_pairs_however_small_the_micro_batch(
    tiny_model: Path,
    tiny_tokenizer,  # noqa: ANN001
) -> None:
    """A micro batch holds whole packed rows (several pairs each), so the accumulation counts
    the pairs a micro batch really holds: 24 pairs at 8 per step are 3 steps (counting micro
    batches instead of pairs gave 2)."""
    model = RewardModel.from_backbone(tiny_model, seed=0)
    pairs, _ = tokenize_pairs(tiny_tokenizer, synthetic_pairs(24), 64)
    stage = StageConfig(learning_rate=1e-4, pairs_per_step=8, micro_batch_pairs=1, warmup_ratio=0.0)
    metrics = train_stage(
        model, pairs, stage, CONFIG, tiny_tokenizer.pad_token_id, packed=True, log=lambda _: None
    )
    assert metrics["pairs_per_row"][0] > 1  # every micro batch (one row) holds several pairs
    assert metrics["steps"] == 3 and metrics["pairs_trained"] == 24


def test_nan_loss_stops_training_with_a_clear_error(
    tiny_model: Path,
    tiny_tokenizer,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    import reward_model.loss

    model = RewardModel.from_backbone(tiny_model, seed=0)
    pairs, _ = tokenize_pairs(tiny_tokenizer, synthetic_pairs(8), 64)
    monkeypatch.setattr(
        reward_model.loss, "bradley_terry_loss", lambda c, r, labels, m: (c - r) * float("nan")
    )
    with pytest.raises(NaNLossError, match="loss is nan at step 0"):
        train_stage(model, pairs, STAGE, CONFIG, tiny_tokenizer.pad_token_id, packed=True, log=lambda _: None)


def test_ensemble_relabels_stage1_and_moves_contradicted_gold_pairs() -> None:
    pairs = synthetic_pairs(2, stage=1) + synthetic_pairs(3, stage=2)
    pairs[4].label = 0.5  # a tied gold pair: never contradicted
    members = [[0.9, 0.2, 0.8, 0.3, 0.1], [0.7, 0.4, 0.6, 0.1, 0.3]]
    out, report = apply_ensemble(pairs, members)
    assert [round(p.label, 3) for p in out] == [0.8, 0.3, 0.999, 0.2, 0.5]
    assert [p.stage for p in out] == [1, 1, 2, 1, 2]  # gold pair 3 (ensemble 0.2) moved to stage 1
    assert (report.relabelled, report.moved_to_stage1, report.agreement_stage2) == (3, 1, 0.5)
    kept, report = apply_ensemble(pairs, members, move_contradicted=False)
    assert [p.stage for p in kept] == [1, 1, 2, 2, 2] and kept[3].label == 0.999
    with pytest.raises(ValueError, match="scored 1 pairs"):
        apply_ensemble(pairs, [[0.5]])


def test_saved_model_loads_with_the_same_rewards(tiny_reward_model: Path, tiny_tokenizer) -> None:  # noqa: ANN001
    from transformers import AutoModelForSequenceClassification

    assert (tiny_reward_model / "config.json").is_file() and (
        tiny_reward_model / "model.safetensors"
    ).is_file()
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model)  # any HF user can load it
    assert hf.config.num_labels == 1 and hf.config.assay_reward_model["pooling"] == "last"
    scorer = RewardScorer(tiny_reward_model, max_length=64)
    prompts = [[{"role": "user", "content": "Write a short story."}], "Scrivi una breve descrizione di Roma."]
    completions = ["My answer is yes.", [{"role": "assistant", "content": "My answer is no."}]]
    rewards = scorer.score(prompts, completions)
    for prompt, completion, reward in zip(prompts, completions, rewards, strict=True):
        ids = torch.tensor([scorer.tokenize(prompt, completion)])
        alone = hf(input_ids=ids).logits[0, 0].item()  # HF's own last-token pooling, no padding
        assert reward == pytest.approx(alone, abs=1e-4)


def test_encoder_backbone_pools_and_trains(tmp_path: Path, tiny_tokenizer) -> None:  # noqa: ANN001
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=tiny_tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,  # deterministic, so batched and alone compare exactly
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path / "bert")
    tiny_tokenizer.save_pretrained(tmp_path / "bert")
    model = RewardModel.from_backbone(tmp_path / "bert", seed=0)
    assert model.pooling == "cls"
    pairs, _ = tokenize_pairs(tiny_tokenizer, synthetic_pairs(16), 64)
    stage = STAGE.model_copy(update={"learning_rate": 1e-2, "epochs": 10})
    metrics = train_stage(
        model, pairs, stage, CONFIG, tiny_tokenizer.pad_token_id, packed=False, log=lambda _: None
    )
    assert metrics["pairs_per_row"] == [1, 1]
    assert sum(metrics["losses"][-3:]) < 0.5 * sum(metrics["losses"][:3])
    # padding does not change an encoder's reward: scored in a batch equals scored alone
    model.eval()
    segments = pair_segments(pairs[:4])
    together = score_segments(model, segments, tiny_tokenizer.pad_token_id, capacity=64, packing=False)
    for column, segment in enumerate(segments):
        alone = score_segments(model, [segment], tiny_tokenizer.pad_token_id, capacity=64, packing=False)
        assert torch.allclose(together[:, column], alone[:, 0], atol=1e-4)
