"""LSKD critic: CE + MSE(QA) + MSE(rationale onto r_score), checkpoint with model card, AutoModel loading."""

import json
import os
import sys

import pytest
import torch

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))


def test_critic_step_losses_match_independent_computation(tmp_path):
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.lskd import LskdCollator, load_lskd
    from hf_vcr.data.synthetic_lskd import write_synthetic_lskd
    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.models.configuration_lskd import tiny_critic_config
    from hf_vcr.models.modeling_lskd import LskdCriticModel
    from hf_vcr.trainers.critic_config import CriticConfig
    from hf_vcr.trainers.critic_trainer import CriticTrainer

    files = write_synthetic_lskd(str(tmp_path / "d"), n_images=0, n_mc=0, n_critic=12, seed=2)
    ds = load_lskd(files["critic"], files["images_dir"], threshold=None, cache_dir=str(tmp_path / "c"))
    assert set(ds["r_score"]) != set(ds["qa_score"]) or ds["r_score"] != ds["qa_score"]
    tok = build_word_tokenizer(["what color is the ball box cup hat in [ 0 1 2 3 4 5 6 7 ] ? answer : rationale : it is . inside looks",
                                "black white green blue red yellow"])
    ip = BlipImageProcessorPil(size={"height": 32, "width": 32})
    collator = LskdCollator(tok, ip, critic_targets=True)
    torch.manual_seed(0)
    model = LskdCriticModel(tiny_critic_config(vocab_size=len(tok)))
    batch = collator([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        out = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    expect_r = ((out.rationale_score - batch["r_score"]) ** 2).mean().item()
    expect_qa = ((out.qa_score - batch["qa_score"]) ** 2).mean().item()
    expect_ce = torch.nn.functional.cross_entropy(out.logits, batch["labels"]).item()
    args = CriticConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=len(ds), max_steps=1, logging_steps=1,
                        report_to="none", save_strategy="no", learning_rate=1e-3)
    tr = CriticTrainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    tr.train()
    log = next(l for l in tr.state.log_history if "rationale_mse" in l)
    assert log["rationale_mse"] == pytest.approx(expect_r, rel=1e-4)
    assert log["qa_mse"] == pytest.approx(expect_qa, rel=1e-4)
    assert log["critic_ce"] == pytest.approx(expect_ce, rel=1e-4)
    assert log["loss"] == pytest.approx(expect_r + expect_qa + expect_ce, rel=1e-4)


def test_train_critic_script_saves_loadable_checkpoint_with_card(tmp_path):
    import train_critic
    from transformers import AutoModel

    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "configs", "critic_synthetic.yaml")
    results = train_critic.main([cfg, "--output_dir", str(tmp_path / "run"), "--synthetic_items", "60", "--max_steps", "4",
                                 "--per_device_train_batch_size", "8", "--logging_steps", "2", "--save_steps", "2"])
    assert "eval_accuracy" in results and "eval_rationale_mse" in results
    final = tmp_path / "run" / "final"
    m = AutoModel.from_pretrained(final)
    assert type(m).__name__ == "LskdCriticModel"
    card = (final / "README.md").read_text()
    assert "LSKD critic" in card and "eval_accuracy" in card and "model-index" in card
    assert os.path.isfile(tmp_path / "run" / "checkpoint-4" / "checkpoint_complete")
    assert json.load(open(tmp_path / "run" / "critic_results.json"))["eval_accuracy"] == results["eval_accuracy"]
