"""LSKD student: Q-Former-only training, tied ITG head, the ITG mask, LoRA, vision caching, save/load, generative variant."""

import json
import os

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
import torch

from hf_vcr.models.configuration_lskd import tiny_generative_config, tiny_student_config
from hf_vcr.models.modeling_lskd import (
    LskdStudentModel,
    apply_qformer_lora,
    merge_lora,
    trainable_parameter_summary,
)
from hf_vcr.trainers.lskd_config import QFormerDistillConfig

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


def _inputs(b=4, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (b, t), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[0, t - 2 :] = 0
    return torch.randn(b, 3, 32, 32, generator=g), ids, mask


def test_only_qformer_side_trains_and_vision_is_frozen():
    torch.manual_seed(0)
    m = LskdStudentModel(tiny_student_config(decoder_start_token_id=4))
    for name, p in m.named_parameters():  # LAVIS's ln_vision (HF: vision post_layernorm) trains with the Q-Former
        trunk = name.startswith("vision_model.") and not name.startswith("vision_model.post_layernorm.")
        assert p.requires_grad == (not trunk), name
    assert 0 < trainable_parameter_summary(m)["fraction"] < 1
    m.train()
    assert not m.vision_model.training  # a frozen encoder runs in eval mode
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    px, ids, mask = _inputs()
    out = m(pixel_values=px, input_ids=ids, attention_mask=mask, stage1=True)
    from hf_vcr.losses.lskd import itc_loss, itg_loss, itm_loss

    loss = itc_loss(out.image_feats, out.text_feats, out.temperature) + itm_loss(out.itm_logits, out.itm_labels) + itg_loss(
        out.itg_logits, out.decoder_input_ids, out.decoder_attention_mask)
    loss.backward()
    opt.step()
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("vision_model.") and "post_layernorm" not in k)
    for k in ("query_tokens", "temp", "vision_model.post_layernorm.weight", "itm_head.weight", "vision_projection.weight", "text_projection.weight",
              "qformer.encoder.layer.0.crossattention.attention.query.weight", "embeddings.word_embeddings.weight"):
        assert not torch.equal(before[k], after[k]), k
    assert out.itm_logits.shape == (12, 2) and out.itm_labels.tolist() == [1] * 4 + [0] * 8
    assert (out.decoder_input_ids[:, 0] == 4).all()  # decoder-start token


def test_lm_head_tied_and_save_load_roundtrip(tmp_path):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    m = LskdStudentModel(tiny_student_config())
    assert m.lm_head.decoder.weight is m.embeddings.word_embeddings.weight
    m.save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "model.safetensors")
    assert AutoConfig.from_pretrained(tmp_path).model_type == "lskd_student"
    m2 = AutoModel.from_pretrained(tmp_path)
    assert type(m2) is LskdStudentModel
    assert m2.lm_head.decoder.weight is m2.embeddings.word_embeddings.weight
    assert m2.config.qformer_config.use_qformer_text_input
    px, ids, mask = _inputs()
    m.eval(), m2.eval()
    with torch.no_grad():
        a = m(pixel_values=px, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True).logits_per_image
        b = m2(pixel_values=px, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True).logits_per_image
    assert torch.allclose(a, b, atol=1e-6)
    assert m2.vision_frozen and m2.vision_model.post_layernorm.weight.requires_grad
    # output_loading_info=True returns (model, info): the ViT must be frozen all the same
    m3, info = LskdStudentModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(info, dict) and m3.vision_frozen
    assert not any(p.requires_grad for n, p in m3.vision_model.named_parameters() if not n.startswith("post_layernorm."))


def test_decoder_start_token_defaults_to_dec_after_the_vocabulary():
    """LAVIS appends [DEC] after BERT's vocabulary (30522 of 30523): without an explicit id the ITG input starts there,
    not at [CLS]."""
    cfg = tiny_student_config(vocab_size=50)
    assert cfg.decoder_start_token_id == 49
    assert tiny_student_config(vocab_size=50, decoder_start_token_id=3).decoder_start_token_id == 3
    m = LskdStudentModel(cfg)
    ids = torch.tensor([[2, 7, 8]])
    assert m.decoder_input_ids(ids).tolist() == [[49, 7, 8]]


def test_itg_mask_is_respected_by_the_qformer():
    torch.manual_seed(0)
    m = LskdStudentModel(tiny_student_config()).eval()
    px, ids, mask = _inputs()
    mask = torch.ones_like(mask)
    emb = m.encode_image(px)
    ids2 = ids.clone()
    ids2[:, 4:] = 9  # change the future
    with torch.no_grad():
        a = m.itg_logits(emb, ids, mask)
        b = m.itg_logits(emb, ids2, mask)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)  # positions < 4 cannot see tokens >= 4
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)
    # and the ITM pass (bidirectional) does see later text
    with torch.no_grad():
        c = m.multimodal_query_output(emb, ids, mask)
        d = m.multimodal_query_output(emb, ids2, mask)
    assert not torch.allclose(c, d, atol=1e-5)


def test_lora_option_trains_adapters_and_merges(tmp_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    m = LskdStudentModel(tiny_student_config())
    full = trainable_parameter_summary(m)["trainable"]
    apply_qformer_lora(m, r=2)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names)
    assert not any(n.startswith("qformer.") and "lora_" not in n for n in names)
    assert "query_tokens" in names and "temp" in names
    assert trainable_parameter_summary(m)["trainable"] < full
    for n, p in m.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # make the adapters matter
    px, ids, mask = _inputs()
    m.eval()
    with torch.no_grad():
        before = m(pixel_values=px, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True).logits_per_image
    merge_lora(m)
    assert not any("lora_" in n for n, _ in m.named_parameters())
    m.save_pretrained(tmp_path)
    m2 = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = m2(pixel_values=px, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True).logits_per_image
    assert torch.allclose(before, after, atol=1e-5)


def test_config_refuses_caching_with_augmentation(tmp_path):
    with pytest.raises(ValueError, match="cache_vision_outputs needs augment_regions=False"):
        QFormerDistillConfig(output_dir=str(tmp_path), cache_vision_outputs=True, augment_regions=True)
    with pytest.raises(ValueError, match="at least one"):
        QFormerDistillConfig(output_dir=str(tmp_path), itc_weight=0, itm_weight=0, itg_weight=0)


def test_trainer_logs_components_and_cached_vision_matches(tmp_path):
    from datasets import Dataset

    from hf_vcr.trainers.lskd_trainer import QFormerDistillTrainer

    torch.manual_seed(0)
    px, ids, mask = _inputs(b=8)
    rows = [{"i": i} for i in range(8)]

    def collate(batch):
        idx = [r["i"] for r in batch]
        return {"pixel_values": px[idx], "input_ids": ids[idx], "attention_mask": mask[idx], "example_ids": torch.tensor(idx)}

    losses = {}
    for cache in (False, True):
        torch.manual_seed(0)
        m = LskdStudentModel(tiny_student_config())
        args = QFormerDistillConfig(output_dir=str(tmp_path / str(cache)), per_device_train_batch_size=4, max_steps=3, logging_steps=1,
                                    report_to="none", save_strategy="no", augment_regions=False, cache_vision_outputs=cache,
                                    itm_weight=0.0, learning_rate=1e-3, seed=0, data_seed=0)
        tr = QFormerDistillTrainer(model=m, args=args, train_dataset=Dataset.from_list(rows), data_collator=collate)
        tr.train()
        logs = [l for l in tr.state.log_history if "loss_itc" in l]
        assert logs and all("loss_itg" in l and "temperature" in l for l in logs)
        losses[cache] = [l["loss"] for l in logs]
        if cache:
            assert len(tr._vision_cache) == 8
    assert losses[False] == pytest.approx(losses[True], rel=1e-5)


def test_generative_variant_trains_qformer_only_and_generates(tmp_path):
    from transformers import AutoModelForImageTextToText, Blip2ForConditionalGeneration

    from hf_vcr.trainers.lskd_trainer import freeze_for_generative

    torch.manual_seed(0)
    image_token = 7
    m = Blip2ForConditionalGeneration(tiny_generative_config(vocab_size=64, image_token_index=image_token))
    freeze_for_generative(m)
    trainable = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"qformer", "query_tokens", "language_projection"}
    q = m.config.num_query_tokens
    prompt = torch.tensor([[image_token] * q + [10, 11, 12]] * 2)
    target = torch.tensor([[20, 21, 3]] * 2)
    ids = torch.cat([prompt, target], 1)
    labels = torch.cat([torch.full_like(prompt, -100), target], 1)
    px = torch.randn(2, 3, 32, 32)
    lm_before = {k: v.clone() for k, v in m.language_model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(60):
        out = m(pixel_values=px, input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        first = first if first is not None else out.loss.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.1 * first
    assert all(torch.equal(lm_before[k], v) for k, v in m.language_model.state_dict().items())  # LM frozen
    gen = m.generate(pixel_values=px[:1], input_ids=prompt[:1], attention_mask=torch.ones_like(prompt[:1]), max_new_tokens=3, do_sample=False)
    assert gen[0, -3:].tolist() == [20, 21, 3]
    m.save_pretrained(tmp_path)
    m2 = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(m2) is Blip2ForConditionalGeneration


VCR_DIR = os.path.join(str(SHARED_DATA), "vcr")


class _KeywordScorer:
    """Stub scorer: high score for texts containing a keyword, so the expected choices are known."""

    def __init__(self, answer_word, rationale_word):
        self.words = (answer_word, rationale_word)
        self.seen = []

    def image_embeds(self, images):
        self.seen.extend(images)
        return torch.zeros(len(images), 1, 1)

    def score_embeds(self, emb, texts):
        import numpy as np

        out = []
        for t in texts:
            a, _, r = t.partition(" Rationale: ")
            out.append(float(self.words[0] in a) + 0.5 * float(self.words[1] in r))
        return np.array(out)


@pytest.mark.real_data
def test_zero_shot_vcr_on_real_item_wiring():
    from hf_vcr.data.vcr import load_vcr
    from hf_vcr.metrics.zero_shot import evaluate_vcr_zero_shot, vcr_item_scores

    ds = load_vcr(os.path.join(VCR_DIR, "val_sample_from_VLE_README.jsonl"), VCR_DIR, images_dir=os.path.join(VCR_DIR, "vcr1images"))
    row = ds[0]
    # answer 2 ("... is a visitor") and rationale 3 ("... holding an umbrella ...") are right for val-1
    good = _KeywordScorer("visitor", "umbrella")
    a, r = vcr_item_scores(good, row)
    assert a.shape == (4,) and r.shape == (4, 4) and a.argmax() == 2 and (r.argmax(1) == 3).all()
    assert good.seen[0].size == (row["width"], row["height"])  # regions drawn on the real image
    res = evaluate_vcr_zero_shot(good, [row])
    assert (res["q2a"], res["qa2r"], res["q2ar"]) == (100.0, 100.0, 100.0)
    # a wrong answer choice makes Q->AR wrong even when QA->R (given the right answer) is right
    res = evaluate_vcr_zero_shot(_KeywordScorer("nowhere", "umbrella"), [row])
    assert (res["q2a"], res["qa2r"], res["q2ar"]) == (0.0, 100.0, 0.0)


def test_zero_shot_vcr_renumbers_objects_in_drawing_order():
    """Objects 3 and 5 of an item are named and coloured [0] and [1] (the released evaluation's ids), never 3 and 5."""
    import numpy as np
    from PIL import Image

    from hf_vcr.data.regions import region_color
    from hf_vcr.metrics.zero_shot import vcr_item_scores

    boxes = [[0, 0, 1, 1, 1.0]] * 3 + [[2, 2, 11, 11, 1.0], [0, 0, 1, 1, 1.0], [14, 2, 25, 11, 1.0]]
    row = {
        "annot_id": "x", "boxes": boxes, "image_path": None,
        "question": ["is", "p", "near", "q", "?"], "question_refs": [[], [3], [], [5], []],
        "answer_choices": [["yes"], ["no"]], "answer_choices_refs": [[[]], [[]]],
        "rationale_choices": [["it", "is"], ["no"]], "rationale_choices_refs": [[[], [5]], [[]]],
    }
    texts = []

    class Recorder(_KeywordScorer):
        def score_embeds(self, emb, t):
            texts.extend(t)
            return super().score_embeds(emb, t)

    rec = Recorder("yes", "it")
    import hf_vcr.metrics.zero_shot as zs

    image = Image.new("RGB", (30, 20))
    orig = zs.draw_vcr_item
    zs.draw_vcr_item = lambda r, id_map=None: orig(r, image=image, alpha=1.0, id_map=id_map)
    try:
        vcr_item_scores(rec, row)
    finally:
        zs.draw_vcr_item = orig
    assert texts[0].startswith("is [0] near [1] ?") and all("[3]" not in t and "[5]" not in t for t in texts)
    assert any("Rationale: it [1]" in t for t in texts)
    a = np.asarray(rec.seen[0])
    assert tuple(a[6, 6]) == region_color(0) and tuple(a[6, 20]) == region_color(1)


@pytest.mark.parametrize("strategy", ["released", "uniform"])
def test_student_trains_on_lines_with_12_and_30_regions_with_augmentation(tmp_path, strategy):
    """Issue 14: real images have 10-30 regions; with augmentation on (max_regions 8, as the shipped config) a few
    training steps run, and every region id of the texts is drawn."""
    from PIL import Image
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.lskd import LskdCollator, load_lskd
    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.trainers.lskd_trainer import QFormerDistillTrainer

    os.makedirs(tmp_path / "images")
    lines = []
    for i, n in enumerate([12, 30, 12, 30, 12, 30, 12, 30]):
        Image.new("RGB", (64, 64), (i * 20, 0, 0)).save(tmp_path / "images" / f"{i}.png")
        refs = [{"name": str(k), "boxes": [[2 * k, k, 2 * k + 4, k + 6]]} for k in range(n)]
        lines.append({"image": f"images/{i}.png", "region": [n - 1], "region_all": list(range(n)), "references": refs,
                      "question": ["what", "is", [n - 1], "doing", "?"], "answer": [[n - 1], "is", "sitting", "."],
                      "rationale": ["near", [0], "."], "prediction": 0.9})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(l) + "\n" for l in lines))
    ds = load_lskd(str(corpus), str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert sorted(len(r) for r in ds["region_all"]) == [12] * 4 + [30] * 4
    tok = build_word_tokenizer(["what is doing ? answer : rationale : sitting near . " + " ".join(f"[ {k} ]" for k in range(40))])
    collator = LskdCollator(tok, BlipImageProcessorPil(size={"height": 32, "width": 32}), augment=True, max_regions=8, seed=0,
                            region_strategy=strategy)
    for _ in range(20):  # every render works and names regions inside what it drew
        for r in (ds[0], ds[1]):
            _, text = collator.render(r)
    torch.manual_seed(0)
    model = LskdStudentModel(tiny_student_config(vocab_size=len(tok)))
    args = QFormerDistillConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=4, max_steps=3, logging_steps=1,
                                report_to="none", save_strategy="no", learning_rate=1e-3, region_strategy=strategy)
    tr = QFormerDistillTrainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    tr.train()
    losses = [l["loss"] for l in tr.state.log_history if "loss_itc" in l]
    assert len(losses) == 3 and all(np.isfinite(losses))


@pytest.mark.real_data
def test_zero_shot_scorer_with_a_real_student_on_the_vcr_image():
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.data.vcr import load_vcr
    from hf_vcr.metrics.zero_shot import ItmScorer, evaluate_vcr_zero_shot, multiple_choice_accuracy

    ds = load_vcr(os.path.join(VCR_DIR, "val_sample_from_VLE_README.jsonl"), VCR_DIR, images_dir=os.path.join(VCR_DIR, "vcr1images"))
    tok = build_word_tokenizer(["does [ 0 1 2 ] live in this house ? answer : rationale : no yes"])
    torch.manual_seed(0)
    model = LskdStudentModel(tiny_student_config(vocab_size=len(tok)))
    for head in ("itm", "itc"):
        scorer = ItmScorer(model, tok, BlipImageProcessorPil(size={"height": 32, "width": 32}), head=head)
        res = evaluate_vcr_zero_shot(scorer, [ds[0]])
        assert set(res) >= {"q2a", "qa2r", "q2ar"} and all(0 <= res[k] <= 100 for k in ("q2a", "qa2r", "q2ar"))
    from PIL import Image

    mc = multiple_choice_accuracy(scorer, [(Image.new("RGB", (40, 40)), ["yes", "no", "no no"], 1)])
    assert mc["n"] == 1 and mc["chance"] == pytest.approx(100 / 3)


def test_student_learns_the_localized_set_and_saves_a_loadable_checkpoint(tmp_path):
    """Short run of scripts/train_lskd.py on the embedded set: zero-shot MC (ITC scores) rises from chance.

    The longer run of scripts/configs/lskd_synthetic.yaml (ITM head, reported in docs/lskd.md) takes minutes.
    """

    from transformers import AutoModel

    from hf_vcr.flows import lskd as train_lskd

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: extra threads only spin on a busy machine
    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "configs", "lskd_synthetic.yaml")
    try:
        res = train_lskd.main([cfg, "--output_dir", str(tmp_path / "run"), "--synthetic_images", "1000", "--synthetic_mc", "80",
                               "--max_steps", "220", "--augment_regions", "false", "--cache_vision_outputs", "true",
                               "--save_steps", "220", "--logging_steps", "50", "--lr_scheduler_type", "constant_with_warmup",
                               "--warmup_steps", "10"])
    finally:
        torch.set_num_threads(threads)
    assert res["initial_mc_accuracy_itc"] < 45 and res["mc_chance"] == 25.0
    assert res["mc_accuracy_itc"] >= 60, res  # chance is 25%: the student reads the highlighted region
    final = tmp_path / "run" / "final"
    m = AutoModel.from_pretrained(final)
    assert type(m) is LskdStudentModel and m.vision_frozen
    card = (final / "README.md").read_text()
    assert "LSKD" in card and "mc_accuracy" in card and "model-index" in card
    assert os.path.isfile(tmp_path / "run" / "checkpoint-220" / "checkpoint_complete")


@pytest.mark.real_data
def test_evaluate_zero_shot_command_on_real_vcr_and_the_localized_set(tmp_path, capsys):
    """``hf-vcr evaluate zero-shot`` loads a saved student with its tokenizer and image processor, scores the
    real VCR val-1 item (regions drawn on its image) and an LSKD-format MC file, and prints one JSON object."""
    import json

    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.cli import main as cli
    from hf_vcr.data.synthetic_lskd import write_synthetic_lskd
    from hf_vcr.data.tokenization import build_word_tokenizer

    paths = write_synthetic_lskd(str(tmp_path / "lskd"), n_images=0, n_mc=6, n_critic=0, image_size=32, seed=0)
    tok = build_word_tokenizer(["does [ 0 1 2 ] live in this house ? answer : rationale : no yes red blue green"])
    torch.manual_seed(0)
    model = LskdStudentModel(tiny_student_config(vocab_size=len(tok)))
    model.save_pretrained(tmp_path / "student")
    tok.save_pretrained(tmp_path / "student")
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "student")
    vcr_file = os.path.join(VCR_DIR, "val_sample_from_VLE_README.jsonl")
    assert cli(["evaluate", "zero-shot", "--model", str(tmp_path / "student"), "--vcr", vcr_file,
                "--images-dir", os.path.join(VCR_DIR, "vcr1images")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"q2a", "qa2r", "q2ar"} <= set(res) and all(res[k] in (0.0, 100.0) for k in ("q2a", "qa2r", "q2ar"))  # one item
    assert cli(["evaluate", "zero-shot", "--model", str(tmp_path / "student"), "--mc", paths["mc"], "--head", "itc",
                "--images-dir", str(tmp_path / "lskd")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["mc_n"] == 6 and 0 <= res["mc_accuracy"] <= 100 and 0 < res["mc_chance"] < 100
