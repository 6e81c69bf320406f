"""Fixtures for the end-to-end Hub tests: a local Hub stand-in (``hub_server.py``) and a client environment
pointed at it (HF_ENDPOINT, dummy HF_TOKEN, HF_HUB_DISABLE_XET=1, online, isolated caches).

``huggingface_hub``, ``datasets`` and ``transformers`` read several of these variables once, at import time, and
other test directories import them before this file is loaded, so the fixture patches the module-level copies as
well as the environment (``monkeypatch`` restores everything after each test).
"""

from __future__ import annotations

import os
import uuid

import pytest

from .hub_server import LocalHubServer


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    server = LocalHubServer(str(tmp_path_factory.mktemp("local_hub_storage"))).start()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server, tmp_path, monkeypatch):
    """The running local Hub, with this process configured as a client of it."""
    import datasets.config
    import huggingface_hub.constants as hf_constants
    from huggingface_hub import HfFileSystem

    endpoint = hub_server.endpoint
    hf_home = tmp_path / "hf_home"
    hub_cache = hf_home / "hub"
    ds_cache = tmp_path / "datasets_cache"
    for d in (hub_cache, ds_cache):
        d.mkdir(parents=True, exist_ok=True)

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_dummy_local_token")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(ds_cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")

    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    for name in ("AGENT_HARNESSES_PATH", "CHECK_FOR_UPDATE_DONE_PATH", "CHECK_FOR_SKILL_UPDATE_DONE_PATH"):
        if hasattr(hf_constants, name):
            monkeypatch.setattr(hf_constants, name, str(hf_home / os.path.basename(getattr(hf_constants, name))))
    monkeypatch.setattr(hf_constants, "HF_ASSETS_CACHE", str(hf_home / "assets"), raising=False)
    monkeypatch.setattr(hf_constants, "HF_XET_CACHE", str(hf_home / "xet"), raising=False)

    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", endpoint)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_CACHE_HOME", str(hf_home))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", ds_cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", ds_cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", ds_cache / "downloads" / "extracted")

    # transformers keeps one shared HfApi (with the endpoint it saw first): make it pick up ours
    import transformers.utils.hub as tf_hub

    monkeypatch.setattr(tf_hub, "_hf_api", None)

    HfFileSystem.clear_instance_cache()
    hub_server.clear_failures()
    yield hub_server
    hub_server.clear_failures()
    HfFileSystem.clear_instance_cache()


@pytest.fixture
def repo_name():
    """A fresh repository id under the server's user for each test."""
    return lambda stem: f"hf-vcr-tester/{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
