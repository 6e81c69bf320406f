"""Training arguments of SOrT (Sub-question Oriented Tuning, Dharur et al., NAACL 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field


from .training_args import HfVcrTrainingArguments

SORT_LOSS_MODES = ("sq_iq", "sq_only", "released", "none")

DEEPSPEED_REFUSAL = (
    "SOrT cannot run under DeepSpeed ZeRO: its loss needs Grad-CAM vectors, i.e. torch.autograd.grad of the "
    "ground-truth class scores with respect to the fusion activations with create_graph=True, inside the training "
    "step. DeepSpeed ZeRO partitions gradients and parameters behind its own engine.backward hooks, and any "
    "torch.autograd.grad call in the forward graph crashes there. Run SOrT in one process or under DDP "
    "(`accelerate launch --multi_gpu ...` or `torchrun`), without a `deepspeed` config."
)


@dataclass
class SortConfig(HfVcrTrainingArguments):
    """``TrainingArguments`` + the SOrT loss (eq. 2-3).

    The defaults are the paper's: the contrastive hinge on Grad-CAM cosine similarities with
    sub-questions and irrelevant questions, λ1 = λ2 = 2.27, λ3 = 0.0003.
    """

    sort_mode: str = field(
        default="sq_iq",
        metadata={
            "help": "Contrastive gradient loss: 'sq_iq' (paper eq. 2: hinge, sub- vs irrelevant questions), "
            "'sq_only' (ablation: align with sub-questions only), 'released' (sameerdharur/sorting-vqa, hinge "
            "commented out: 1 - cos of the max-normalised Grad-CAM vectors of reasoning and sub-question), or "
            "'none' (BCE only: the baseline).",
            "choices": list(SORT_LOSS_MODES),
        },
    )
    lambda_reasoning: float = field(
        default=2.27, metadata={"help": "λ1: weight of the BCE on reasoning questions (eq. 3; paper 2.27, released 0.33)."}
    )
    lambda_sub: float = field(default=2.27, metadata={"help": "λ2: weight of the BCE on sub-questions (eq. 3; paper 2.27, released 0.33)."})
    lambda_irrelevant: float = field(
        default=0.0003, metadata={"help": "λ3: weight of the BCE on irrelevant questions (eq. 3; paper 0.0003, released 0.33)."}
    )
    contrastive_weight: float = field(
        default=1.0, metadata={"help": "Weight of L_CG in eq. 3 (paper 1; released 0.001, times the number of answers)."}
    )
    contrastive_weight_per_answer: bool = field(
        default=False,
        metadata={"help": "Multiply contrastive_weight by the number of answers (the released distance loss returns "
                          "its mean × targets.size(1), 3129 on VQA)."},
    )
    gradcam_module: str = field(
        default="fusion",
        metadata={"help": "Name (model.get_submodule) of the layer whose output A gives the Grad-CAM vectors G = dy_c/dA * A."},
    )
    cosine_eps: float = field(
        default=1e-8,
        metadata={"help": "Norm floor of the cosine similarity of 'sq_iq', 'sq_only' and the ranking; the vectors are divided "
                          "by their largest absolute entry first, so it only acts on zero vectors (cosine 0)."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the SOrT collator needs the image ids and question lists."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Kept False: Grad-CAM uses torch.autograd.grad inside the step, which DDP's unused-parameter search does not allow."},
    )

    def __post_init__(self):
        if self.sort_mode not in SORT_LOSS_MODES:
            raise ValueError(f"sort_mode must be one of {SORT_LOSS_MODES}, got {self.sort_mode!r}")
        if self.deepspeed:
            raise ValueError(DEEPSPEED_REFUSAL)
        if self.ddp_find_unused_parameters:
            raise ValueError("SOrT needs ddp_find_unused_parameters=False (Grad-CAM calls torch.autograd.grad inside the step)")
        if self.gradient_checkpointing:
            kwargs = dict(self.gradient_checkpointing_kwargs or {})
            kwargs.setdefault("use_reentrant", False)  # double backward needs the non-reentrant variant
            self.gradient_checkpointing_kwargs = kwargs
        super().__post_init__()


@dataclass
class SortModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Start from a saved VqaForClassification (e.g. a BCE-trained Pythia)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path; default: a word-level tokenizer built from the questions."})
    question_encoder: str = field(default="gru", metadata={"help": "'gru' or 'transformer' (a BERT-style encoder from text_config)."})
    text_config: str | None = field(default=None, metadata={"help": "JSON of a transformers text config (question_encoder=transformer), e.g. a tiny BertConfig."})
    word_embedding_dim: int = field(default=300, metadata={"help": "GRU encoder word embedding size."})
    question_hidden_size: int = field(default=1024, metadata={"help": "GRU encoder hidden size."})
    hidden_size: int = field(default=5000, metadata={"help": "Fusion size (= Grad-CAM vector size)."})
    attention_hidden_size: int = field(default=512, metadata={"help": "Question-guided attention hidden size."})
    classifier_hidden_size: int = field(default=10000, metadata={"help": "Classifier hidden size."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout in attention and classifier."})


@dataclass
class SortDataArguments:
    synthetic: bool = field(default=False, metadata={"help": "Generate and use the embedded synthetic VQA-Introspect set."})
    synthetic_dir: str | None = field(default=None, metadata={"help": "Where the synthetic files go (default: OUTPUT_DIR/synthetic_data)."})
    synthetic_train_items: int = field(default=1500, metadata={"help": "Synthetic train <image, reasoning question> items."})
    synthetic_eval_items: int = field(default=300, metadata={"help": "Synthetic eval items."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic data."})
    synthetic_concepts: int | None = field(default=None, metadata={"help": "Use only the first N reasoning concepts (default: all 12)."})
    synthetic_noise: float = field(default=0.5, metadata={"help": "Std of the noise added to the synthetic region features."})
    train_introspect: str | None = field(default=None, metadata={"help": "VQAIntrospect_trainv1.0.json"})
    train_vqa_questions: str | None = field(default=None, metadata={"help": "v2_OpenEnded_mscoco_train2014_questions.json (irrelevant questions)"})
    train_vqa_annotations: str | None = field(default=None, metadata={"help": "v2_mscoco_train2014_annotations.json"})
    eval_introspect: str | None = field(default=None, metadata={"help": "VQAIntrospect_valv1.0.json"})
    eval_vqa_questions: str | None = field(default=None, metadata={"help": "v2_OpenEnded_mscoco_val2014_questions.json"})
    eval_vqa_annotations: str | None = field(default=None, metadata={"help": "v2_mscoco_val2014_annotations.json"})
    region_features: str | None = field(default=None, metadata={"help": "Directory of <image_id>.npy/.npz, or one .h5 (ids, features[, boxes])."})
    max_train_items: int | None = field(default=None, metadata={"help": "Use only the first N training items (debugging)."})
    max_eval_items: int | None = field(default=None, metadata={"help": "Use only the first N evaluation items."})
    max_sub_questions: int | None = field(default=None, metadata={"help": "Keep at most this many sub-questions per item."})
    max_irrelevant_questions: int | None = field(default=8, metadata={"help": "Keep at most this many irrelevant questions per item."})
    max_question_length: int = field(default=24, metadata={"help": "Question token limit."})
    max_answers: int | None = field(default=3129, metadata={"help": "Answer vocabulary size (most frequent answers)."})
    evaluate_before_training: bool = field(default=False, metadata={"help": "Also evaluate the initial model."})
