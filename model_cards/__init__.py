"""Jinja templates of the model and dataset cards (package data of hf_vcr.model_cards)."""
