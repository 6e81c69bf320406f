"""hf_vcr: visual commonsense reasoning methods for the Hugging Face ecosystem.

Importing the package registers every hf_vcr model with the transformers Auto
classes, so ``AutoModel.from_pretrained(dir)`` works without ``trust_remote_code``.
"""

from . import models  # noqa: F401  (registers the Auto classes)

__version__ = "0.1.0"
