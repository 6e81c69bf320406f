"""Pictures of what the models ground (PIL only; no plotting library needed)."""

from .grounding import draw_causal_masks

__all__ = ["draw_causal_masks"]
