"""LSKD losses: BLIP-2 stage-1 objectives (ITC, ITM, ITG) for the student and the critic's objective.

LSKD (Park et al., 2023, section 3 "Distilling localized commonsense"; appendix "training
details") distils the corpus into a BLIP-2 model by training only its Q-Former with the
BLIP-2 stage-1 objectives (Li et al., 2023, "BLIP-2", section 3.2):

* ITC, image-text contrastive: image features are the ``Q`` query outputs, the text
  feature is the ``[CLS]`` output; the similarity of a pair is the maximum over queries,
  divided by a learnable temperature; in-batch negatives come from all processes.
* ITM, image-text matching: a binary classifier over the multimodal query outputs, with
  hard negatives sampled from the contrastive similarity softmax.
* ITG, image-grounded text generation: next-token prediction through the Q-Former with a
  mask in which queries see only queries and text sees the queries and earlier text.

The critic (LSKD section 2.3) adds an accept/reject classifier and two regression heads
(QA score and rationale score) trained with cross entropy + MSE + MSE.

Everything here is a function of tensors. ``gather_with_grad`` / ``gather_no_grad``
(beside the losses, as in open_clip) are identities in a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


# --------------------------------------------------------------------------- gathers
def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every process and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, tensor):
        out = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(out, tensor.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        all_grads = torch.stack(grads).contiguous()
        dist.all_reduce(all_grads)
        return all_grads[dist.get_rank()]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every process) along dim 0, differentiably.

    The gradient reaching this process's slice is the sum over processes, so a per-process
    mean loss averaged by DDP equals the loss on the global batch.
    """
    if not _dist_ready():
        return tensor
    return torch.cat(_GatherWithGrad.apply(tensor), dim=0)


_gather_with_grad = gather_with_grad  # itc_loss has an argument of the same name


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` along dim 0 across processes, without gradient (for negative mining)."""
    if not _dist_ready():
        return tensor
    out = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


@torch.no_grad()
def pad_to_common_length(tensor: torch.Tensor, pad_value: int) -> torch.Tensor:
    """Right-pad dim 1 to the largest length over processes (so token ids can be gathered)."""
    if not _dist_ready():
        return tensor
    length = torch.tensor([tensor.shape[1]], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(dist.get_world_size())]
    dist.all_gather(lengths, length)
    target = int(max(int(x) for x in lengths))
    if target == tensor.shape[1]:
        return tensor
    return F.pad(tensor, (0, target - tensor.shape[1]), value=pad_value)


def process_offset(batch_size: int) -> int:
    """Index of this process's first row in a gathered batch."""
    return dist.get_rank() * batch_size if _dist_ready() else 0


# ----------------------------------------------------------------------------- ITC
def itc_similarities(
    image_feats: torch.Tensor, text_feats: torch.Tensor, all_image_feats: torch.Tensor, all_text_feats: torch.Tensor, temperature: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """BLIP-2 eq. for ITC logits: ``s(I, T) = max_q <z_q(I), t(T)> / tau``.

    ``image_feats`` ``[B, Q, D]`` and ``text_feats`` ``[B, D]`` are L2-normalised local
    features; ``all_*`` are the gathered ones (``[N, Q, D]``, ``[N, D]``). Returns
    ``(sim_i2t [B, N], sim_t2i [B, N])``.
    """
    sim_i2t = torch.einsum("bqd,nd->bqn", image_feats, all_text_feats).max(dim=1).values / temperature
    sim_t2i = torch.einsum("bd,nqd->bnq", text_feats, all_image_feats).max(dim=-1).values / temperature
    return sim_i2t, sim_t2i


def itc_loss(
    image_feats: torch.Tensor,
    text_feats: torch.Tensor,
    temperature: torch.Tensor,
    label_smoothing: float = 0.1,
    group_ids: torch.Tensor | None = None,
    gather_with_grad: bool = False,
) -> torch.Tensor:
    """Image-text contrastive loss (BLIP-2 sec. 3.2, "ITC"; CLIP's symmetric InfoNCE), as LAVIS computes it.

    ``L = 1/2 [CE(s(I_i, T_.), i) + CE(s(T_i, I_.), i)]`` with label smoothing, averaged over the local rows;
    the candidates are every row of the *global* batch (all processes).

    ``gather_with_grad`` (open_clip's name) decides what the gathered side carries:

    * ``False`` (default, LAVIS ``blip2_qformer.py``): the gathered features are a no-grad copy
      (``concat_all_gather``), so ``s(I_i, T_.)`` trains only the image features of row ``i`` and
      ``s(T_i, I_.)`` only its text feature. The copy is taken in one process too, so the gradient does
      not depend on the number of processes.
    * ``True``: gathered with gradient (:func:`gather_with_grad`): every similarity also trains the other
      side, including the features of other processes.

    ``group_ids`` (BLIP-2's ``image_id``, e.g. the source image): rows of the same group are all
    *positives*: the target of row ``i`` is ``(1 - eps) * [same group] / n_same + eps / N`` (LAVIS's soft
    targets with ``eps = label_smoothing``). With distinct ids this is the plain label-smoothed cross entropy.
    """
    b = image_feats.shape[0]
    if gather_with_grad:
        all_image, all_text = _gather_with_grad(image_feats), _gather_with_grad(text_feats)
    else:
        all_image, all_text = gather_no_grad(image_feats.detach()), gather_no_grad(text_feats.detach())
    sim_i2t, sim_t2i = itc_similarities(image_feats, text_feats, all_image, all_text, temperature)
    targets = torch.arange(b, device=image_feats.device) + process_offset(b)
    if group_ids is None:
        return 0.5 * (
            F.cross_entropy(sim_i2t, targets, label_smoothing=label_smoothing)
            + F.cross_entropy(sim_t2i, targets, label_smoothing=label_smoothing)
        )
    all_groups = gather_no_grad(group_ids)
    positive = (group_ids.reshape(-1, 1) == all_groups.reshape(1, -1)).to(sim_i2t.dtype)
    soft = (1.0 - label_smoothing) * positive / positive.sum(1, keepdim=True) + label_smoothing / positive.shape[1]
    loss_i2t = -(soft * F.log_softmax(sim_i2t, dim=1)).sum(1).mean()
    loss_t2i = -(soft * F.log_softmax(sim_t2i, dim=1)).sum(1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


# ----------------------------------------------------------------------------- ITM
@torch.no_grad()
def sample_hard_negatives(
    sim_i2t: torch.Tensor,
    sim_t2i: torch.Tensor,
    offset: int = 0,
    group_ids: torch.Tensor | None = None,
    all_group_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard negatives for ITM (BLIP-2 sec. 3.2, "ITM", following ALBEF).

    For local text ``i`` a negative image is drawn with probability ``softmax(sim_t2i[i])``
    over the gathered images, its own image (column ``offset + i``) excluded (and others of
    the same group); likewise a negative text for each local image from ``softmax(sim_i2t)``.
    Returns ``(negative_image_index [B], negative_text_index [B])`` into the gathered batch.
    """
    b, n = sim_i2t.shape
    if n < 2:
        raise ValueError("hard negatives need at least 2 pairs in the (global) batch")
    exclude = torch.zeros(b, n, dtype=torch.bool, device=sim_i2t.device)
    exclude[torch.arange(b), torch.arange(b) + offset] = True
    if group_ids is not None and all_group_ids is not None:
        exclude |= group_ids[:, None] == all_group_ids[None, :]
    w_t2i = torch.softmax(sim_t2i.float(), dim=1).masked_fill(exclude, 0.0)
    w_i2t = torch.softmax(sim_i2t.float(), dim=1).masked_fill(exclude, 0.0)
    # a row whose every candidate is excluded (or underflows) falls back to uniform over allowed ones
    for w in (w_t2i, w_i2t):
        empty = w.sum(1) <= 0
        if empty.any():
            w[empty] = (~exclude[empty]).float()
            if (w.sum(1) <= 0).any():
                raise ValueError("a row has no admissible negative (every pair shares its group id)")
    neg_image = torch.multinomial(w_t2i, 1, generator=generator).squeeze(1)
    neg_text = torch.multinomial(w_i2t, 1, generator=generator).squeeze(1)
    return neg_image, neg_text


def itm_loss(itm_logits: torch.Tensor, itm_labels: torch.Tensor) -> torch.Tensor:
    """Image-text matching loss (BLIP-2 sec. 3.2, "ITM"): cross entropy of the 2-way matching head.

    ``itm_logits`` ``[M, 2]`` (mean of the per-query logits), ``itm_labels`` ``[M]`` (1 = match).
    """
    return F.cross_entropy(itm_logits, itm_labels)


# ----------------------------------------------------------------------------- ITG
def itg_attention_mask(query_length: int, text_attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ITG "multimodal causal self-attention mask" (BLIP-2 fig. 2, right) as an additive ``[B, 1, L, L]`` mask.

    Over ``[queries; text]`` (``L = Q + T``): queries attend to all queries and no text;
    text token ``t`` attends to every query and to text tokens ``<= t`` that are not padding.
    """
    b, t = text_attention_mask.shape
    q = query_length
    L = q + t
    device = text_attention_mask.device
    allowed = torch.zeros(b, L, L, dtype=torch.bool, device=device)
    allowed[:, :q, :q] = True
    allowed[:, q:, :q] = True
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=device))
    allowed[:, q:, q:] = causal[None] & text_attention_mask.bool()[:, None, :]
    # every row keeps at least the queries, so no softmax row is empty (padded rows are ignored by the loss)
    mask = torch.zeros(b, 1, L, L, dtype=dtype, device=device)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def itg_target_count(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Number of tokens :func:`itg_loss` predicts (every non-padding token after the decoder-start token)."""
    return (attention_mask[:, 1:] != 0).sum()


def itg_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    label_smoothing: float = 0.1,
    num_targets: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Image-grounded text generation loss (BLIP-2 sec. 3.2, "ITG").

    ``input_ids[:, 0]`` is the decoder-start token; token ``t+1`` is predicted from the
    output at ``t``; padding is ignored: ``L = mean_t CE(logits[:, t], input_ids[:, t+1])``.
    ``num_targets`` replaces the local token count as the mean's denominator: with the token count of the
    whole batch over all processes (times the number of processes, which DDP divides by again) the N
    per-process losses average to the mean over every token, as one process on the whole batch computes;
    a per-process mean would weight the tokens of a process with short texts more.
    """
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100).reshape(-1)
    if num_targets is None:
        return F.cross_entropy(shifted.float(), targets, ignore_index=-100, label_smoothing=label_smoothing)
    total = F.cross_entropy(shifted.float(), targets, ignore_index=-100, label_smoothing=label_smoothing, reduction="sum")
    return total / num_targets


# -------------------------------------------------------------------------- critic
VERDICTS = ("accept", "maybe", "reject")


def critic_label_from_verdicts(verdicts) -> int:
    """LSKD sec. 2.3: an instance is rejected (0) if any annotator said reject, else accepted (1).

    ``verdicts`` is a non-empty list of annotator verdicts (``"accept"``, ``"maybe"`` or ``"reject"``, any case),
    one such string, or an already binary label 0/1. Anything else (``[]``, ``5``, ``-3``, ``"yes"``) raises
    ``ValueError``: a label that cannot be read must not silently become "accept".
    """
    if isinstance(verdicts, bool) or (isinstance(verdicts, int) and verdicts in (0, 1)):
        return int(verdicts)
    if isinstance(verdicts, float) and verdicts in (0.0, 1.0):
        return int(verdicts)
    if isinstance(verdicts, str):
        verdicts = [verdicts]
    if not isinstance(verdicts, list) or not verdicts:
        raise ValueError(f"'label' must be 0/1 or a non-empty list of verdicts {list(VERDICTS)}, got {verdicts!r}")
    bad = [v for v in verdicts if not isinstance(v, str) or v.lower() not in VERDICTS]
    if bad:
        raise ValueError(f"'label' verdicts must be among {list(VERDICTS)}, got {bad!r}")
    return 0 if any(v.lower() == "reject" for v in verdicts) else 1


def critic_loss(
    accept_logits: torch.Tensor,
    labels: torch.Tensor,
    qa_pred: torch.Tensor,
    qa_target: torch.Tensor,
    rationale_pred: torch.Tensor,
    rationale_target: torch.Tensor,
    weights: tuple[float, float, float] = (1.0, 0.5, 0.5),
) -> dict[str, torch.Tensor]:
    """LSKD critic objective (sec. 2.3, Table 1 "+ QA MSE + Rationale MSE").

    ``L = w_c CE(accept_logits, label) + w_qa MSE(qa_pred, y_QA) + w_r MSE(rationale_pred, y_QA->R)``.
    The paper gives no weights; the released code (``blip2_critic.py``) uses ``w_c = 1``, ``w_qa = w_r = 0.5``,
    the default here. The rationale head regresses onto the *rationale* score ``y_QA->R`` (the released code
    regresses it onto the QA score, a bug). Returns the components and ``loss``.
    """
    ce = F.cross_entropy(accept_logits, labels)
    qa = F.mse_loss(qa_pred.float(), qa_target.float())
    r = F.mse_loss(rationale_pred.float(), rationale_target.float())
    return {"loss": weights[0] * ce + weights[1] * qa + weights[2] * r, "critic_ce": ce, "qa_mse": qa, "rationale_mse": r}
