"""Training arguments of SOrT (Sub-question Oriented Tuning, Dharur et al., NAACL 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

SORT_LOSS_MODES = ("sq_iq", "sq_only", "pull_only", "none")

DEEPSPEED_REFUSAL = (
    "SOrT cannot run under DeepSpeed ZeRO: its loss needs Grad-CAM vectors, i.e. torch.autograd.grad of the "
    "ground-truth class scores with respect to the fusion activations with create_graph=True, inside the training "
    "step. DeepSpeed ZeRO partitions gradients and parameters behind its own engine.backward hooks, and any "
    "torch.autograd.grad call in the forward graph crashes there. Run SOrT in one process or under DDP "
    "(`accelerate launch --multi_gpu ...` or `torchrun`), without a `deepspeed` config."
)


@dataclass
class SortConfig(TrainingArguments):
    """``TrainingArguments`` + the SOrT loss (eq. 2-3).

    The defaults are the paper's: the contrastive hinge on Grad-CAM cosine similarities with
    sub-questions and irrelevant questions, λ1 = λ2 = 2.27, λ3 = 0.0003.
    """

    sort_mode: str = field(
        default="sq_iq",
        metadata={
            "help": "Contrastive gradient loss: 'sq_iq' (paper eq. 2: hinge, sub- vs irrelevant questions), "
            "'sq_only' (ablation: align with sub-questions only), 'pull_only' (released code: distance to "
            "sub-questions' Grad-CAM vectors), or 'none' (BCE only: the baseline).",
            "choices": list(SORT_LOSS_MODES),
        },
    )
    lambda_reasoning: float = field(default=2.27, metadata={"help": "λ1: weight of the BCE on reasoning questions (eq. 3)."})
    lambda_sub: float = field(default=2.27, metadata={"help": "λ2: weight of the BCE on sub-questions (eq. 3)."})
    lambda_irrelevant: float = field(default=0.0003, metadata={"help": "λ3: weight of the BCE on irrelevant questions (eq. 3)."})
    contrastive_weight: float = field(default=1.0, metadata={"help": "Weight of L_CG in eq. 3 (the paper uses 1)."})
    gradcam_module: str = field(
        default="fusion",
        metadata={"help": "Name (model.get_submodule) of the layer whose output A gives the Grad-CAM vectors G = dy_c/dA * A."},
    )
    cosine_eps: float = field(default=1e-8, metadata={"help": "Norm floor of the cosine similarity (zero vectors give 0)."})
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
