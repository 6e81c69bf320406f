"""Trainers: one ``<method>_config.py`` + ``<method>_trainer.py`` per method (TRL layout)."""

from .base import HfVcrTrainer

__all__ = ["HfVcrTrainer"]
