"""LSKD student and critic built from transformers' BLIP-2 classes.

* :class:`LskdStudentModel` is a :class:`transformers.Blip2ForImageTextRetrieval` (vision
  encoder, learned query tokens, Q-Former with text input, ITC projections, ITM head)
  plus what the retrieval class lacks for training (BLIP-2 stage 1, Li et al. 2023): a
  learnable ITC temperature and an ITG language-model head tied to the Q-Former word
  embeddings. ``forward(..., stage1=True)`` runs the three stage-1 passes (ITC features,
  ITM on positives + hard negatives mined across processes, ITG with the multimodal causal
  mask) in one call so that DDP sees a single forward per step; the losses themselves live
  in :mod:`hf_vcr.losses.lskd` and are composed by ``QFormerDistillTrainer``.
  The vision encoder is frozen (LSKD appendix: "We do not finetune the ViT ... and only
  train the QFormer"); its post-layernorm, LAVIS's separate ``ln_vision``, trains as in LAVIS.
  ``image_embeds`` arguments are the frozen encoder's outputs *before* that layernorm (what can be cached).
* :class:`LskdCriticModel` is the same backbone with an accept/reject classifier and QA-score and
  rationale-score regression heads on the ITM representation (LSKD section 2.3; by default the released
  critic: the ITM head classifies, per-query MLPs score).

Both register with ``AutoConfig`` / ``AutoModel`` when imported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, Blip2ForImageTextRetrieval
from transformers.activations import ACT2FN
from transformers.models.blip_2.modeling_blip_2 import (
    Blip2ImageTextMatchingModelOutput,
    Blip2PreTrainedModel,
    Blip2QFormerModel,
    Blip2TextEmbeddings,
    Blip2VisionModel,
)
from transformers.utils import ModelOutput

from ..losses.lskd import (
    gather_no_grad,
    itc_similarities,
    itg_attention_mask,
    pad_to_common_length,
    process_offset,
    sample_hard_negatives,
)
from .configuration_lskd import LskdCriticConfig, LskdStudentConfig

# parameters of the Q-Former side, the only ones the student trains
QFORMER_SIDE_PREFIXES = (
    "query_tokens", "qformer.", "embeddings.", "vision_projection.", "text_projection.", "itm_head.", "lm_head.", "temp",
    "vision_model.post_layernorm.",  # LAVIS's ln_vision: outside the frozen ViT there, trained with the Q-Former
)


@dataclass
class LskdStage1Output(ModelOutput):
    """Everything the stage-1 losses need.

    image_feats ``[B, Q, D]`` / text_feats ``[B, D]``: normalised ITC features; temperature: the
    clamped learnable temperature; itm_logits ``[3B, 2]`` and itm_labels ``[3B]``: positives, then
    (negative image, text), then (image, negative text); itg_logits ``[B, T, V]`` with the ITG
    ``decoder_input_ids`` and ``decoder_attention_mask``.
    """

    image_feats: torch.FloatTensor | None = None
    text_feats: torch.FloatTensor | None = None
    temperature: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    itm_labels: torch.LongTensor | None = None
    itg_logits: torch.FloatTensor | None = None
    decoder_input_ids: torch.LongTensor | None = None
    decoder_attention_mask: torch.LongTensor | None = None


@dataclass
class LskdCriticOutput(ModelOutput):
    """logits ``[B, 2]`` (reject, accept), qa_score / rationale_score ``[B]`` regressions, itm_logits ``[B, 2]``."""

    logits: torch.FloatTensor | None = None
    qa_score: torch.FloatTensor | None = None
    rationale_score: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None


class LskdLMHead(nn.Module):
    """BERT-style prediction head (transform + decoder); the decoder weight is tied to the word embeddings."""

    def __init__(self, hidden_size: int, vocab_size: int, hidden_act: str, layer_norm_eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = ACT2FN[hidden_act]
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.act(self.dense(hidden_states)))) + self.bias


class _LskdQFormerBase(Blip2ForImageTextRetrieval):
    """Shared BLIP-2 retrieval backbone; ``image_embeds`` may replace ``pixel_values`` (cached frozen ViT outputs)."""

    def _build_backbone(self, config) -> None:
        Blip2PreTrainedModel.__init__(self, config)
        # built directly, not with _from_config: under ZeRO-3 that enters deepspeed.zero.Init and partitions the parts
        # before the whole model exists (see hf_vcr/models/submodules.py)
        self.vision_model = Blip2VisionModel(copy.deepcopy(config.vision_config))
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.qformer_config.hidden_size))
        self.embeddings = Blip2TextEmbeddings(config.qformer_config)
        self.qformer = Blip2QFormerModel(copy.deepcopy(config.qformer_config))
        self.vision_projection = nn.Linear(config.qformer_config.hidden_size, config.image_text_hidden_size)
        self.text_projection = nn.Linear(config.qformer_config.hidden_size, config.image_text_hidden_size)
        self.itm_head = nn.Linear(config.qformer_config.hidden_size, 2)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self:
            # random queries (BLIP-2 initialises them N(0, 0.02)); zeros would keep every query identical
            nn.init.normal_(self.query_tokens, std=self.config.initializer_range)

    # ---------------------------------------------------------------- freezing
    def _vision_trunk_parameters(self):
        return [p for n, p in self.vision_model.named_parameters() if not n.startswith("post_layernorm.")]

    @property
    def vision_frozen(self) -> bool:
        return not any(p.requires_grad for p in self._vision_trunk_parameters())

    def freeze_vision_model(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the vision encoder; its post-layernorm (LAVIS's ``ln_vision``) always trains."""
        for p in self._vision_trunk_parameters():
            p.requires_grad_(not frozen)
        self.vision_model.post_layernorm.requires_grad_(True)
        if frozen:
            self.vision_model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.vision_frozen:
            self.vision_model.eval()  # a frozen encoder runs without dropout, as in BLIP-2 (the layernorm has none)
        return self

    # ---------------------------------------------------------------- passes
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Vision encoder outputs before the post-layernorm ``[B, P, Dv]`` (no gradient when the encoder is frozen),
        so they can be cached while ``ln_vision`` trains."""
        vm = self.vision_model
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.vision_frozen):
            return vm.encoder(inputs_embeds=vm.embeddings(pixel_values)).last_hidden_state

    def vision_features(self, pixel_values: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """What the Q-Former attends to: ``ln_vision(encode_image(pixel_values))`` (or of the given ``image_embeds``)."""
        if image_embeds is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values or image_embeds")
            image_embeds = self.encode_image(pixel_values)
        return self.vision_model.post_layernorm(image_embeds)

    def _image_embeds(self, pixel_values, image_embeds):
        return self.vision_features(pixel_values, image_embeds)

    def _image_mask(self, image_embeds):
        return torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)

    def query_output(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Q-Former outputs of the learned queries alone ``[B, Q, H]`` (the image representation)."""
        query_tokens = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self.qformer(
            query_embeds=query_tokens,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=self._image_mask(image_embeds),
        )
        return out.last_hidden_state

    def text_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unimodal text pass ``[B, T, H]`` (no queries, no image)."""
        out = self.qformer(query_embeds=self.embeddings(input_ids=input_ids), query_length=0, attention_mask=attention_mask)
        return out.last_hidden_state

    def multimodal_query_output(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        """ITM pass: queries and text attend to each other (bidirectional), queries see the image. Returns ``[B, Q, H]``."""
        q = self.query_tokens.shape[1]
        query_tokens = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        mask = torch.cat([torch.ones(query_tokens.shape[:-1], dtype=attention_mask.dtype, device=attention_mask.device), attention_mask], 1)
        out = self.qformer(
            query_embeds=self.embeddings(input_ids=input_ids, query_embeds=query_tokens),
            query_length=q,
            attention_mask=mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=self._image_mask(image_embeds),
        )
        return out.last_hidden_state[:, :q]

    def itm_logits(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        """ITM logits ``[B, 2]``: the matching head on every query output, averaged over queries."""
        return self.itm_head(self.multimodal_query_output(image_embeds, input_ids, attention_mask)).mean(dim=1)

    def image_feats(self, image_embeds) -> torch.Tensor:
        return nn.functional.normalize(self.vision_projection(self.query_output(image_embeds)), dim=-1)

    def text_feats(self, input_ids, attention_mask) -> torch.Tensor:
        return nn.functional.normalize(self.text_projection(self.text_output(input_ids, attention_mask)[:, 0]), dim=-1)

    @torch.no_grad()
    def match_probability(self, input_ids, attention_mask, pixel_values=None, image_embeds=None) -> torch.Tensor:
        """P(match) ``[B]`` for each (image, text) row: the zero-shot score."""
        image_embeds = self._image_embeds(pixel_values, image_embeds)
        return self.itm_logits(image_embeds, input_ids, attention_mask).softmax(-1)[:, 1]

    def _retrieval_forward(self, pixel_values, input_ids, attention_mask, image_embeds, use_image_text_matching_head):
        """``Blip2ForImageTextRetrieval.forward`` semantics (ITM logits or ITC similarities), with cached embeds allowed."""
        image_embeds = self._image_embeds(pixel_values, image_embeds)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if use_image_text_matching_head:
            logits = self.itm_logits(image_embeds, input_ids, attention_mask)
            return Blip2ImageTextMatchingModelOutput(logits_per_image=logits, logits_per_text=logits.t())
        img = self.image_feats(image_embeds)
        txt = self.text_feats(input_ids, attention_mask)
        sim = torch.einsum("bqd,nd->bqn", img, txt).max(dim=1).values
        return Blip2ImageTextMatchingModelOutput(logits_per_image=sim, logits_per_text=sim.t(), text_embeds=txt, image_embeds=img)


class LskdStudentModel(_LskdQFormerBase):
    """BLIP-2 stage-1 student: ITC (learnable temperature), ITM (hard negatives), ITG (tied LM head)."""

    config_class = LskdStudentConfig
    config: LskdStudentConfig
    _tied_weights_keys = {"lm_head.decoder.weight": "embeddings.word_embeddings.weight"}

    def __init__(self, config: LskdStudentConfig):
        self._build_backbone(config)
        qc = config.qformer_config
        # shape [1], not []: DeepSpeed (0.19) broadcasts parameters as bytes and cannot view a 0-dim tensor
        self.temp = nn.Parameter(torch.full((1,), float(config.temperature_init)))
        self.lm_head = LskdLMHead(qc.hidden_size, qc.vocab_size, qc.hidden_act, qc.layer_norm_eps)
        self.post_init()
        self.freeze_vision_model(config.freeze_vision)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        # loading re-creates parameters: freeze again (output_loading_info=True returns (model, info))
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, LskdStudentModel):
            model.freeze_vision_model(model.config.freeze_vision)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self:
            self.temp.fill_(self.config.temperature_init)
        if isinstance(module, LskdLMHead):
            module.bias.zero_()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(self.config.temperature_min, self.config.temperature_max).reshape(())

    def itg_logits(self, image_embeds, decoder_input_ids, decoder_attention_mask) -> torch.Tensor:
        """ITG in one Q-Former pass over ``[queries; text]`` with the multimodal causal mask; returns ``[B, T, V]``."""
        q = self.query_tokens.shape[1]
        query_tokens = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        embeds = self.embeddings(input_ids=decoder_input_ids, query_embeds=query_tokens)
        mask = itg_attention_mask(q, decoder_attention_mask, dtype=embeds.dtype)
        out = self.qformer(
            query_embeds=embeds,
            query_length=q,
            attention_mask=mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=self._image_mask(image_embeds),
        )
        return self.lm_head(out.last_hidden_state[:, q:])

    def decoder_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Text ids with position 0 replaced by the decoder-start token (BLIP-2's ``[DEC]``)."""
        start = self.config.decoder_start_token_id
        if start is None:
            return input_ids
        ids = input_ids.clone()
        ids[:, 0] = start
        return ids

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        image_embeds: torch.Tensor | None = None,
        use_image_text_matching_head: bool = False,
        stage1: bool = False,
        group_ids: torch.LongTensor | None = None,
        compute_itm: bool = True,
        compute_itg: bool = True,
        generator: torch.Generator | None = None,
        **kwargs,
    ):
        """Without ``stage1``: the retrieval scores of ``Blip2ForImageTextRetrieval``. With ``stage1``: an
        :class:`LskdStage1Output` (hard negatives for ITM are mined over the batch of every process)."""
        if input_ids is None:
            raise ValueError("input_ids are required")
        if not stage1:
            return self._retrieval_forward(pixel_values, input_ids, attention_mask, image_embeds, use_image_text_matching_head)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        image_embeds = self._image_embeds(pixel_values, image_embeds)
        b = image_embeds.shape[0]
        image_feats = self.image_feats(image_embeds)
        text_feats = self.text_feats(input_ids, attention_mask)
        temperature = self.temperature()
        out = LskdStage1Output(image_feats=image_feats, text_feats=text_feats, temperature=temperature)

        if compute_itm:
            with torch.no_grad():
                all_image = gather_no_grad(image_feats.detach())
                all_text = gather_no_grad(text_feats.detach())
                sim_i2t, sim_t2i = itc_similarities(image_feats.detach(), text_feats.detach(), all_image, all_text, temperature.detach())
                all_groups = gather_no_grad(group_ids) if group_ids is not None else None
                neg_image, neg_text = sample_hard_negatives(
                    sim_i2t, sim_t2i, offset=process_offset(b), group_ids=group_ids, all_group_ids=all_groups, generator=generator
                )
                pad_id = self.config.qformer_config.pad_token_id or 0
                all_embeds = gather_no_grad(image_embeds.detach())
                all_ids = gather_no_grad(pad_to_common_length(input_ids, pad_id))
                all_mask = gather_no_grad(pad_to_common_length(attention_mask, 0))
            ids_len = all_ids.shape[1]
            pos_ids = nn.functional.pad(input_ids, (0, ids_len - input_ids.shape[1]), value=pad_id)
            pos_mask = nn.functional.pad(attention_mask, (0, ids_len - attention_mask.shape[1]), value=0)
            itm_embeds = torch.cat([image_embeds, all_embeds[neg_image], image_embeds], 0)
            itm_ids = torch.cat([pos_ids, pos_ids, all_ids[neg_text]], 0)
            itm_mask = torch.cat([pos_mask, pos_mask, all_mask[neg_text]], 0)
            out.itm_logits = self.itm_logits(itm_embeds, itm_ids, itm_mask)
            out.itm_labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)]).to(input_ids.device)

        if compute_itg:
            dec_ids = self.decoder_input_ids(input_ids)
            out.itg_logits = self.itg_logits(image_embeds, dec_ids, attention_mask)
            out.decoder_input_ids = dec_ids
            out.decoder_attention_mask = attention_mask
        return out


class LskdCriticModel(_LskdQFormerBase):
    """The LSKD critic: BLIP-2 ITM backbone + accept/reject classifier + QA-score and rationale-score heads.

    ``config.critic_head="released"`` (default): the classifier is the ITM head (pre-trained in a BLIP-2
    checkpoint) on every multimodal query output, averaged over the queries; each score head is
    ``Linear(h, h) - ReLU - Linear(h, 1)`` on every query output, averaged over the queries
    (``blip2_critic.py``). ``"linear"``: new linear heads on the dropped-out mean query output.
    """

    config_class = LskdCriticConfig
    config: LskdCriticConfig

    def __init__(self, config: LskdCriticConfig):
        self._build_backbone(config)
        h = config.qformer_config.hidden_size
        if config.critic_head == "released":
            self.qa_score_head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
            self.rationale_score_head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        else:
            self.critic_dropout = nn.Dropout(config.critic_dropout)
            self.critic_head = nn.Linear(h, 2)
            self.qa_score_head = nn.Linear(h, 1)
            self.rationale_score_head = nn.Linear(h, 1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        image_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> LskdCriticOutput:
        if input_ids is None:
            raise ValueError("input_ids are required")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        image_embeds = self._image_embeds(pixel_values, image_embeds)
        hidden = self.multimodal_query_output(image_embeds, input_ids, attention_mask)  # [B, Q, H]
        itm_logits = self.itm_head(hidden).mean(dim=1)
        if self.config.critic_head == "released":
            return LskdCriticOutput(
                logits=itm_logits,
                qa_score=self.qa_score_head(hidden).mean(dim=1).squeeze(-1),
                rationale_score=self.rationale_score_head(hidden).mean(dim=1).squeeze(-1),
                itm_logits=itm_logits,
                pooled_output=hidden.mean(dim=1),
            )
        pooled = self.critic_dropout(hidden.mean(dim=1))
        return LskdCriticOutput(
            logits=self.critic_head(pooled),
            qa_score=self.qa_score_head(pooled).squeeze(-1),
            rationale_score=self.rationale_score_head(pooled).squeeze(-1),
            itm_logits=itm_logits,
            pooled_output=pooled,
        )

    @torch.no_grad()
    def accept_probability(self, input_ids, attention_mask, pixel_values=None, image_embeds=None) -> torch.Tensor:
        """The critic score: P(accept) ``[B]``, compared with the filtering threshold (0.8 in LSKD)."""
        return self(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, image_embeds=image_embeds).logits.softmax(-1)[:, 1]


# ------------------------------------------------------------------------- helpers
def trainable_parameter_summary(model: nn.Module) -> dict[str, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "fraction": trainable / max(total, 1)}


def qformer_only(model: _LskdQFormerBase) -> _LskdQFormerBase:
    """Train only the Q-Former side (queries, Q-Former, text embeddings, projections, heads, temperature)."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(QFORMER_SIDE_PREFIXES) or "lora_" in name)
    model.freeze_vision_model(True)
    return model


def apply_qformer_lora(model: _LskdQFormerBase, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: str | None = None):
    """Insert PEFT LoRA adapters into the Q-Former's attention projections (in place).

    The Q-Former's own weights are then frozen; queries, projections, heads and temperature
    keep training. :func:`merge_lora` folds the adapters back before ``save_pretrained``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    target = target_modules or r".*qformer\.encoder\.layer\.\d+\.(attention|crossattention)\.attention\.(query|key|value)"
    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target), model)
    for name, p in model.named_parameters():
        keep = "lora_" in name or (name.startswith(QFORMER_SIDE_PREFIXES) and not name.startswith("qformer."))
        p.requires_grad_(keep)
    model.freeze_vision_model(True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every PEFT LoRA layer into its base linear and put the base layer back (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model


AutoConfig.register(LskdStudentConfig.model_type, LskdStudentConfig)
AutoConfig.register(LskdCriticConfig.model_type, LskdCriticConfig)
AutoModel.register(LskdStudentConfig, LskdStudentModel)
AutoModel.register(LskdCriticConfig, LskdCriticModel)
