"""hf_vcr models: ``configuration_<name>.py`` + ``modeling_<name>.py`` pairs.

Each ``modeling_*`` module registers its classes with the transformers Auto classes
when imported; importing this package imports them all.
"""

from .configuration_vcr import VcrConfig
from .modeling_vcr import VcrForMultipleChoice, VcrModel
from .modeling_vqa import VqaConfig, VqaForClassification  # noqa: F401  (SOrT)
from .modeling_videoqa import VideoQaConfig, VideoQaForClassification, VideoQaForMultipleChoice, VideoQaModel  # noqa: F401  (EIGV)
from .modeling_lskd import LskdCriticModel, LskdStudentModel  # noqa: F401  (LSKD)
from .adapters import VisualBertForVcr, visualbert_vcr_config  # noqa: F401  (ARC / joint coupling)

__all__ = [
    "VcrConfig", "VcrModel", "VcrForMultipleChoice", "VqaConfig", "VqaForClassification", "VideoQaConfig",
    "VideoQaModel", "VideoQaForMultipleChoice", "VideoQaForClassification", "LskdStudentModel", "LskdCriticModel",
    "VisualBertForVcr", "visualbert_vcr_config",
]
