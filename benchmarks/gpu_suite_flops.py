"""Model FLOPs of one training step of each method, counted from the configuration and the batch shapes.

Conventions (those of model-FLOPs utilisation, PaLM appendix B):

* only matrix products count (linear layers, attention scores and attention-weighted sums, einsums):
  2 FLOPs per multiply-add; element-wise work (norms, activations, softmax, losses) is left out;
* a product that trains costs 3x its forward (forward, gradient w.r.t. the input, gradient w.r.t. the
  weight); a product whose input carries no gradient (the first projection of precomputed features) costs
  2x; a frozen module run without gradient (LSKD's vision tower) costs 1x;
* padded positions are counted: the GPU computes them.

So for a dense transformer this is the familiar ``6 x parameters x tokens`` plus ``12 x layers x L^2 x d``
per sequence for attention. Each ``*_step_flops`` function below states its formula; the smoke test
checks every one against ``torch.utils.flop_counter.FlopCounterMode`` run on the real training step.
"""

from __future__ import annotations


class Ledger:
    """Accumulates matmul FLOPs of a training step (``passes``: 3 = forward + both gradients)."""

    def __init__(self) -> None:
        self.total = 0

    def dense(self, rows: int, d_in: int, d_out: int, passes: int = 3) -> None:
        """A linear layer applied to ``rows`` vectors: ``2 * rows * d_in * d_out`` per pass."""
        self.total += passes * 2 * rows * d_in * d_out

    def matmul(self, batch: int, m: int, k: int, n: int, passes: int = 3) -> None:
        """``batch`` products ``[m, k] @ [k, n]`` between activations (e.g. attention ``Q K^T``)."""
        self.total += passes * 2 * batch * m * k * n


def encoder(led: Ledger, seqs: int, length: int, hidden: int, ff: int, layers: int, passes: int = 3,
            pooler: bool = False, pooler_passes: int = 1) -> None:
    """A BERT/ViT-style encoder over ``seqs`` sequences of ``length`` tokens, per layer:
    ``Q, K, V, O`` projections (``4 d^2`` per token), the feed-forward (``2 d ff`` per token) and attention
    (``QK^T`` and ``AV``: ``2 L^2 d`` per sequence each). ``pooler``: BERT's pooler on the first token (its
    output is unused by hf_vcr's heads, so it runs forward only)."""
    tokens = seqs * length
    for _ in range(layers):
        led.dense(tokens, hidden, 4 * hidden, passes)
        led.matmul(seqs, length, hidden, length, passes)
        led.matmul(seqs, length, length, hidden, passes)
        led.dense(tokens, hidden, ff, passes)
        led.dense(tokens, ff, hidden, passes)
    if pooler:
        led.dense(seqs, hidden, hidden, pooler_passes)


def text_encoder(led: Ledger, config, seqs: int, length: int, passes: int = 3) -> None:
    """A transformers BERT-family text encoder (with its pooler) from its config."""
    encoder(led, seqs, length, config.hidden_size, config.intermediate_size, config.num_hidden_layers, passes, pooler=True)


# ----------------------------------------------------------------------------- VCR, ARC, joint


def vcr_scorer(led: Ledger, config, items: int, choices: int, length: int, objects: int) -> None:
    """``VcrForMultipleChoice`` with precomputed region features, on ``items x choices`` sequences:

    region + box projections (``B N (R + 5) d``, no input gradient), the text encoder on ``B C`` sequences
    of ``L`` tokens, each fusion layer (query/out projections ``2 d^2`` per token, key/value ``2 d^2`` per
    object per choice, attention ``2 x 2 L N d`` per sequence, ``[h; a; h*a]`` combine ``3 d^2`` and the
    feed-forward ``4 d^2`` per token), and the scorer ``d`` per choice."""
    d = config.hidden_size
    led.dense(items * objects, config.region_feature_dim, d, passes=2)
    led.dense(items * objects, 5, d, passes=2)
    seqs = items * choices
    text_encoder(led, config.text_config, seqs, length)
    tokens, object_rows = seqs * length, seqs * objects
    for _ in range(config.num_fusion_layers):
        led.dense(tokens, d, d)
        led.dense(object_rows, d, 2 * d)
        led.matmul(seqs, length, d, objects)
        led.matmul(seqs, length, objects, d)
        led.dense(tokens, d, d)
        led.dense(tokens, 3 * d, d)
        led.dense(tokens, d, 2 * d)
        led.dense(tokens, 2 * d, d)
    led.dense(seqs, d, 1)


def vcr_step_flops(config, items: int, choices: int, length: int, objects: int) -> int:
    """VCR Q→A step: one scorer forward + backward (``vcr_scorer``)."""
    led = Ledger()
    vcr_scorer(led, config, items, choices, length, objects)
    return led.total


def arc_step_flops(config, items: int, a_length: int, r_length: int, objects: int, choices: int = 4) -> int:
    """ARC stage 2 with the cached teacher: f_A on the Q→A view and f_R on the QA→R view (two scorers),
    plus KD-R's scores ``h_C . h_R_i`` (``2 C d`` per item; the teacher feature carries no gradient)."""
    led = Ledger()
    vcr_scorer(led, config, items, choices, a_length, objects)
    vcr_scorer(led, config, items, choices, r_length, objects)
    led.matmul(items, 1, config.hidden_size, choices, passes=2)
    return led.total


def joint_step_flops(config, items: int, a_length: int, slot_length: int, answer_length: int, objects: int,
                     weightings: int = 1, choices: int = 4) -> int:
    """Joint coupling (softmax/gumbel/baseline75: one answer weighting per item): f_A on the Q→A view, the
    weighted answer embeddings (eq. 1: ``2 x 4 La H`` per weighting), and f_R on ``weightings x 4`` rationale
    queries of ``slot_length`` tokens."""
    led = Ledger()
    vcr_scorer(led, config, items, choices, a_length, objects)
    led.matmul(items * weightings, 1, choices, answer_length * config.hidden_size)
    vcr_scorer(led, config, items, weightings * choices, slot_length, objects)
    return led.total


# ----------------------------------------------------------------------------- SOrT


def sort_step_flops(config, questions: int, tokens: int, regions: int) -> int:
    """SOrT step on a Pythia-style ``VqaForClassification`` (GRU question encoder), ``questions`` questions
    holding ``tokens`` non-pad tokens in all, each over ``regions`` region features:

    GRU ``6 H (E + H)`` per token (the first step's ``h_0`` gets no gradient); attention ``v_proj`` (``D A`` per
    region per question, no input gradient), ``q_proj``, the score and the attended sum (``D`` per region);
    fusion ``(D + H) h``; classifier ``h c + c n``. Grad-CAM (eq. 1, ``create_graph=True``) adds ``dy/dA`` through the classifier (1x its
    forward, input gradients only) and that graph's backward: 1x for the output layer (its upstream
    gradient is a constant) and 2x for the hidden layer."""
    led = Ledger()
    e, h_q = config.word_embedding_dim, config.question_hidden_size
    d, a, h = config.image_feature_dim, config.attention_hidden_size, config.hidden_size
    c, n = config.classifier_hidden_size, config.num_labels
    led.dense(tokens, e, 3 * h_q)
    led.dense(tokens - questions, h_q, 3 * h_q)
    led.dense(questions, h_q, 3 * h_q, passes=2)  # the first step's h_0 = 0 needs no gradient
    led.dense(questions * regions, d, a, passes=2)
    led.dense(questions, h_q, a)
    led.dense(questions * regions, a, 1)
    led.matmul(questions, 1, regions, d, passes=2)
    led.dense(questions, d, h)
    led.dense(questions, h_q, h)
    led.dense(questions, h, c)
    led.dense(questions, c, n)
    led.dense(questions, c, n, passes=2)  # Grad-CAM: dy/dh and its weight gradient
    led.dense(questions, h, c, passes=3)  # Grad-CAM: dy/dA and both of its gradients
    return led.total


# ----------------------------------------------------------------------------- EIGV


def eigv_step_flops(config, items: int, choices: int, length: int, num_video_negatives: int, num_question_negatives: int) -> int:
    """EIGV step (``eigv_views_step``) on ``VideoQaForMultipleChoice``, ``V = 2 + N`` views per anchor:

    clip projection ``K Dv d`` per item (no input gradient), plus the memory-bank clips of the positive and
    the video negatives (``(1 + N_v) K Dv d``); the text encoder once on ``B C`` sequences and its
    projection; the grounding indicator twice (``4 d g`` per clip and per item, and the two ``K g``
    scores); the fusion transformer on ``B V C`` sequences of ``1 + K + L`` tokens; the scorer
    ``d^2 + d`` per sequence; InfoNCE ``(V - 1) C d`` per anchor."""
    led = Ledger()
    k, dv, d, g = config.num_clips, config.visual_dim, config.hidden_size, config.grounding_size
    views = 2 + num_video_negatives + num_question_negatives
    led.dense(items * k, dv, d, passes=2)
    led.dense(items * (1 + num_video_negatives) * k, dv, d, passes=2)
    seqs = items * choices
    text_encoder(led, config.text_config, seqs, length)
    led.dense(seqs * length, config.text_config.hidden_size, d)
    for _ in range(2):  # grounding of v and of the intervened v*
        led.dense(items * k, d, 2 * g)
        led.dense(items, d, 2 * g)
        led.matmul(items, 1, g, k)
        led.matmul(items, 1, g, k)
    fused = items * views * choices
    encoder(led, fused, 1 + k + length, d, config.intermediate_size, config.num_fusion_layers)
    led.dense(fused, d, d)
    led.dense(fused, d, 1)
    led.matmul(items, 1, choices * d, views - 1)
    return led.total


# ----------------------------------------------------------------------------- LSKD student and critic


def vision_tower(led: Ledger, vision_config, images: int, passes: int) -> int:
    """BLIP-2 ViT: patch embedding (``3 p^2 Dv`` per patch, no input gradient) and the encoder on
    ``patches + 1`` tokens. Returns the token count ``P``."""
    p = vision_config.patch_size
    patches = (vision_config.image_size // p) ** 2
    led.dense(images * patches, 3 * p * p, vision_config.hidden_size, passes=min(passes, 2))
    encoder(led, images, patches + 1, vision_config.hidden_size, vision_config.intermediate_size,
            vision_config.num_hidden_layers, passes)
    return patches + 1


def qformer(led: Ledger, qc, rows: int, queries: int, text: int, image_tokens: int, image_width: int) -> None:
    """One Q-Former pass over ``rows`` inputs of ``queries`` query tokens and ``text`` text tokens:
    self-attention and feed-forward on every token, cross-attention (every ``cross_attention_frequency``
    layers) from the queries only to the ``image_tokens`` image tokens of width ``image_width``. The image
    tokens carry a gradient even with the ViT frozen: its post-layernorm (LAVIS's ``ln_vision``) trains."""
    h, ff = qc.hidden_size, qc.intermediate_size
    length = queries + text
    tokens = rows * length
    for layer in range(qc.num_hidden_layers):
        led.dense(tokens, h, 4 * h)
        led.matmul(rows, length, h, length)
        led.matmul(rows, length, length, h)
        if queries and layer % qc.cross_attention_frequency == 0:
            led.dense(rows * queries, h, 2 * h)  # query and output projections
            led.dense(rows * image_tokens, image_width, 2 * h)  # keys and values of the image tokens
            led.matmul(rows, queries, h, image_tokens)
            led.matmul(rows, queries, image_tokens, h)
        led.dense(tokens, h, ff)
        led.dense(tokens, ff, h)


def lskd_student_step_flops(config, images: int, text: int) -> int:
    """LSKD student (BLIP-2 stage 1, vision frozen): the ViT forward only (1x), then ITC (queries alone,
    text alone, both projections, the similarities ``2 x B^2 Q E`` with the gathered side detached), hard
    negative mining (the same similarities again, no gradient), ITM on ``3B`` (queries + text) rows and its
    head, ITG on ``B`` (queries + text) rows and its LM head (``H^2 + H V`` per text token)."""
    led = Ledger()
    qc = config.qformer_config
    p = vision_tower(led, config.vision_config, images, passes=1)
    dv, h, q, e = config.vision_config.hidden_size, qc.hidden_size, config.num_query_tokens, config.image_text_hidden_size
    qformer(led, qc, images, q, 0, p, dv)
    led.dense(images * q, h, e)
    qformer(led, qc, images, 0, text, p, dv)
    led.dense(images, h, e)
    led.matmul(images, q, e, images, passes=2)  # ITC i2t (gathered text detached)
    led.matmul(images, 1, e, images * q, passes=2)  # ITC t2i
    led.matmul(images, q, e, images, passes=1)  # hard-negative mining, no gradient
    led.matmul(images, 1, e, images * q, passes=1)
    qformer(led, qc, 3 * images, q, text, p, dv)
    led.dense(3 * images * q, h, 2)
    qformer(led, qc, images, q, text, p, dv)
    led.dense(images * text, h, h)
    led.dense(images * text, h, qc.vocab_size)
    return led.total


def critic_step_flops(config, images: int, text: int, train_vision: bool) -> int:
    """LSKD critic: the ViT (trained, 3x, unless frozen: 1x), one multimodal Q-Former pass (queries + text)
    and the heads: ``critic_head="released"``: the ITM head (the accept/reject logits) and two
    ``Linear(h, h)-ReLU-Linear(h, 1)`` score heads on every query output; ``"linear"``: three linear heads on
    the mean query output, the ITM head computed but outside the loss (forward only)."""
    led = Ledger()
    qc = config.qformer_config
    q, h = config.num_query_tokens, qc.hidden_size
    p = vision_tower(led, config.vision_config, images, passes=3 if train_vision else 1)
    qformer(led, qc, images, q, text, p, config.vision_config.hidden_size)
    if config.critic_head == "released":
        led.dense(images * q, h, 2)
        for _ in range(2):
            led.dense(images * q, h, h)
            led.dense(images * q, h, 1)
    else:
        led.dense(images, h, 4)
        led.dense(images * q, h, 2, passes=1)
    return led.total
