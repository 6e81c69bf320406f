"""Distil an LSKD localized commonsense corpus into a BLIP-2 student (Q-Former only).

    python scripts/train_lskd.py scripts/configs/lskd_synthetic.yaml [--field value ...]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_lskd.py scripts/configs/lskd_synthetic.yaml

Real data: ``--synthetic false --corpus lskd_corpus.jsonl --images_dir IMAGES [--region_file regions.jsonl]
--model_name_or_path DIR_OF_A_BLIP2_RETRIEVAL_CHECKPOINT --tokenizer_name bert-base-uncased``; ``--eval_vcr val.jsonl
--vcr_images_dir vcr1images`` adds zero-shot VCR. ``--objective generative`` trains the Q-Former of a
``Blip2ForConditionalGeneration`` (language model frozen) to write "Answer: ... Rationale: ...".

The last line printed is a JSON object of the evaluation metrics.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict


import torch
from accelerate import PartialState
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

import hf_vcr  # noqa: F401
from hf_vcr.data.lskd import LskdCollator, LskdGenerativeCollator, load_lskd
from hf_vcr.data.regions import refs_to_text
from hf_vcr.models.configuration_lskd import tiny_generative_config, tiny_student_config
from hf_vcr.models.modeling_lskd import LskdStudentModel, apply_qformer_lora, merge_lora, trainable_parameter_summary
from hf_vcr.trainers.lskd_config import LskdDataArguments, LskdModelArguments, QFormerDistillConfig
from hf_vcr.trainers.lskd_trainer import QFormerDistillTrainer, freeze_for_generative
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main, save_final
from hf_vcr.utils.runtime import announce_run
from hf_vcr.utils.distributed import gather_whole_model_after_training

DEC_TOKEN, IMAGE_TOKEN = "[DEC]", "<image>"


def _vocab_texts(ds, max_regions: int) -> list[str]:
    texts = ["Answer: Rationale: " + " ".join(f"[{i}]" for i in range(max(max_regions, 16)))]
    for rec in ds:
        for f in ("question", "answer", "rationale"):
            texts.append(refs_to_text(rec[f"{f}_words"], rec[f"{f}_refs"]))
    return texts


def _mc_texts(path: str) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for toks in [row["question"], *row["choices"]]:
                out.append(" ".join(t if isinstance(t, str) else f"[{t[0]}]" for t in toks))
    return out


def build(model_args: LskdModelArguments, data_args: LskdDataArguments, args: QFormerDistillConfig):
    _ = args.device  # set up the distributed state from TrainingArguments first (e.g. under accelerate launch)
    state = PartialState()
    if data_args.synthetic:
        from hf_vcr.data.synthetic_lskd import write_synthetic_lskd

        out = data_args.synthetic_dir or os.path.join(args.output_dir, "synthetic_data")
        with state.main_process_first():
            if state.is_main_process and not os.path.isfile(os.path.join(out, "mc.jsonl")):
                write_synthetic_lskd(out, n_images=data_args.synthetic_images, n_mc=data_args.synthetic_mc, n_critic=0,
                                     image_size=model_args.image_size, seed=data_args.synthetic_seed)
        data_args.corpus = os.path.join(out, "corpus.jsonl")
        data_args.images_dir = out
        data_args.eval_mc = data_args.eval_mc or os.path.join(out, "mc.jsonl")
    if not data_args.corpus:
        raise ValueError("pass --synthetic true, or --corpus (with --images_dir)")
    with state.main_process_first():
        train = load_lskd(data_args.corpus, data_args.images_dir, data_args.region_file, threshold=data_args.threshold,
                          require_rationale=args.with_rationale)

    from transformers import AutoImageProcessor, AutoTokenizer

    src = model_args.model_name_or_path
    if model_args.tokenizer_name or (src and os.path.isfile(os.path.join(src, "tokenizer.json"))):
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or src)
    else:
        from hf_vcr.data.tokenization import build_word_tokenizer

        texts = _vocab_texts(train, data_args.max_regions) + (_mc_texts(data_args.eval_mc) if data_args.eval_mc else [])
        tokenizer = build_word_tokenizer(texts)
    tokenizer.add_special_tokens({"additional_special_tokens": [DEC_TOKEN, IMAGE_TOKEN]})
    if src and os.path.isfile(os.path.join(src, "preprocessor_config.json")):
        image_processor = AutoImageProcessor.from_pretrained(src)
    else:
        image_processor = BlipImageProcessorPil(size={"height": model_args.image_size, "width": model_args.image_size})

    torch.manual_seed(args.seed)
    if args.objective == "generative":
        from transformers import Blip2ForConditionalGeneration

        image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if src:
            model = Blip2ForConditionalGeneration.from_pretrained(src)
        else:
            config = tiny_generative_config(vocab_size=len(tokenizer), image_token_index=image_token_id, image_size=model_args.image_size,
                                            patch_size=model_args.patch_size, hidden=model_args.hidden_size, num_query_tokens=model_args.num_query_tokens)
            config.text_config.pad_token_id = tokenizer.pad_token_id
            config.text_config.eos_token_id = tokenizer.sep_token_id
            config.text_config.bos_token_id = tokenizer.cls_token_id
            model = Blip2ForConditionalGeneration(config)
            torch.nn.init.normal_(model.query_tokens, std=0.02)
        freeze_for_generative(model)
        collator = LskdGenerativeCollator(
            tokenizer, image_processor, num_query_tokens=model.config.num_query_tokens, image_token_id=image_token_id,
            eos_token_id=tokenizer.sep_token_id, with_rationale=args.with_rationale, augment=args.augment_regions,
            max_regions=data_args.max_regions, max_length=data_args.max_length, seed=args.seed, region_strategy=args.region_strategy,
        )
    else:
        if src:
            model = LskdStudentModel.from_pretrained(src)
        else:
            config = tiny_student_config(vocab_size=len(tokenizer), image_size=model_args.image_size, patch_size=model_args.patch_size,
                                         hidden=model_args.hidden_size, num_query_tokens=model_args.num_query_tokens,
                                         decoder_start_token_id=tokenizer.convert_tokens_to_ids(DEC_TOKEN))
            config.qformer_config.pad_token_id = tokenizer.pad_token_id
            model = LskdStudentModel(config)
        if model.config.decoder_start_token_id is None:
            model.config.decoder_start_token_id = tokenizer.convert_tokens_to_ids(DEC_TOKEN)
        if args.use_lora:
            apply_qformer_lora(model, r=args.lora_r, alpha=args.lora_alpha)
        collator = LskdCollator(tokenizer, image_processor, with_rationale=args.with_rationale, augment=args.augment_regions,
                                max_regions=data_args.max_regions, max_length=data_args.max_length, seed=args.seed + state.process_index,
                                region_strategy=args.region_strategy, rationale_probability=args.rationale_probability)
    trainer = QFormerDistillTrainer(model=model, args=args, train_dataset=train, data_collator=collator, processing_class=tokenizer)
    return trainer, tokenizer, image_processor, collator


def evaluate(model, tokenizer, image_processor, data_args, args, collator) -> dict:
    """Zero-shot MC accuracy and ITM accuracy (stage 1), or exact-answer accuracy of generation (generative)."""
    from hf_vcr.metrics.zero_shot import ItmScorer, evaluate_vcr_zero_shot, itm_pair_accuracy, localized_mc_items, multiple_choice_accuracy

    results: dict = {}
    model.eval()
    if not data_args.eval_mc:
        return results
    items = localized_mc_items(data_args.eval_mc, data_args.images_dir)[: data_args.eval_limit]
    if args.objective == "generative":
        return generative_accuracy(model, tokenizer, image_processor, items, collator)
    scorer = ItmScorer(model, tokenizer, image_processor, max_length=data_args.max_length)
    mc = multiple_choice_accuracy(scorer, items)
    results["mc_accuracy"], results["mc_chance"] = mc["accuracy"], mc["chance"]
    results["mc_accuracy_itc"] = multiple_choice_accuracy(ItmScorer(model, tokenizer, image_processor, max_length=data_args.max_length, head="itc"), items)["accuracy"]
    rng = random.Random(0)
    pairs, negs = [], []
    for image, cands, label in items:
        pairs.append((image, cands[label]))
        negs.append(rng.choice([c for i, c in enumerate(cands) if i != label]))
    itm = itm_pair_accuracy(scorer, pairs, negs)
    results["itm_accuracy"], results["itm_pairwise_accuracy"] = itm["itm_accuracy"], itm["itm_pairwise_accuracy"]
    results["itm_chance"] = 50.0
    if data_args.eval_vcr:
        from hf_vcr.data.vcr import load_vcr

        ds = load_vcr(data_args.eval_vcr, os.path.dirname(os.path.abspath(data_args.eval_vcr)), images_dir=data_args.vcr_images_dir)
        rows = [ds[i] for i in range(len(ds) if data_args.eval_limit is None else min(len(ds), data_args.eval_limit))]
        results.update({f"vcr_{k}": v for k, v in evaluate_vcr_zero_shot(scorer, rows).items()})
    return results


@torch.no_grad()
def generative_accuracy(model, tokenizer, image_processor, items, collator) -> dict:
    """Share of MC items whose generated "Answer: ..." contains the right choice's answer word and no other choice's."""
    right = 0
    for image, cands, label in items:
        question = cands[label].split(" Answer: ")[0]
        answers = [c.split(" Answer: ")[1] for c in cands]
        prompt = torch.tensor([collator.prompt_ids(question)])
        pv = image_processor([image], return_tensors="pt")["pixel_values"]
        out = model.generate(pixel_values=pv, input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=16, do_sample=False)
        text = tokenizer.decode(out[0], skip_special_tokens=True).lower()
        ans = text.split("rationale")[0]
        words = [set(a.lower().split()) - {"it", "is", "."} for a in answers]
        hit = words[label] <= set(ans.split()) and not any(w <= set(ans.split()) for i, w in enumerate(words) if i != label)
        right += int(hit)
    return {"generation_answer_accuracy": 100.0 * right / len(items), "generation_chance": 100.0 / len(items[0][1])}


PROG = "hf-vcr train lskd"
ARGUMENTS = (LskdModelArguments, LskdDataArguments, QFormerDistillConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of LskdModelArguments, LskdDataArguments, QFormerDistillConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
    trainer, tokenizer, image_processor, collator = build(model_args, data_args, args)
    announce_run(trainer, "lskd")
    results: dict = {"trainable_fraction": trainable_parameter_summary(trainer.model)["fraction"]}
    if data_args.evaluate_before_training and trainer.is_world_process_zero():
        results.update({f"initial_{k}": v for k, v in evaluate(trainer.model, tokenizer, image_processor, data_args, args, collator).items()})
    if args.do_train or not args.do_eval:
        trainer.train_resuming()
    model = trainer.accelerator.unwrap_model(trainer.model)
    gather_whole_model_after_training(trainer)  # ZeRO-3: whole weights on every rank for rank 0's evaluation and save
    if args.use_lora:
        merge_lora(model)
    if trainer.is_world_process_zero():
        results.update(evaluate(model, tokenizer, image_processor, data_args, args, collator))
        save_final(model, os.path.join(args.output_dir, "final"), extras=[tokenizer, image_processor],
                           write_card=lambda folder: write_card(folder, model_args, data_args, args, results, argv))
        finish(args, results, "lskd_results.json", push=pushed(args), commit_message="LSKD student model trained with hf_vcr")
    return results


def write_card(path, model_args, data_args, args, results, argv=None) -> None:
    from hf_vcr.model_card import train_command, write_model_card

    generative = args.objective == "generative"
    write_model_card(
        path,
        model_name=os.path.basename(os.path.abspath(args.output_dir)),
        method="LSKD",
        method_summary="Localized Symbolic Knowledge Distillation: a BLIP-2 model whose Q-Former alone is trained on a "
        "critic-filtered localized commonsense corpus; regions are drawn into the image in fixed colours and named [k] in the text.",
        paper_title="Localized Symbolic Knowledge Distillation for Visual Commonsense Models",
        paper_url="https://arxiv.org/abs/2312.04837",
        architecture="Blip2ForConditionalGeneration (LM frozen)" if generative else "LskdStudentModel (Blip2ForImageTextRetrieval + ITC temperature + ITG head)",
        task_type="image-text-to-text" if generative else "zero-shot-image-classification",
        dataset_name="synthetic localized commonsense set" if data_args.synthetic else "LSKD localized commonsense corpus",
        train_command=train_command("train_lskd.py", argv),
        hyperparameters={k: v for k, v in asdict(args).items() if k in (
            "objective", "itc_weight", "itm_weight", "itg_weight", "augment_regions", "with_rationale", "use_lora",
            "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size", "seed")} | {"threshold": data_args.threshold},
        metrics={k: v for k, v in results.items() if not k.startswith("initial_")},
        load_path=args.hub_model_id or os.path.join(args.output_dir, "final"),
        extra_load=None if generative else "Zero-shot scoring: `hf_vcr.metrics.zero_shot.ItmScorer(model, tokenizer, image_processor)`.",
    )


def pushed(args) -> list[tuple[str, str | None]]:
    """The final model with its card, as HUB_MODEL_ID."""
    return [(os.path.join(args.output_dir, "final"), None)]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
