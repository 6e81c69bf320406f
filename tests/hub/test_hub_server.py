"""The local Hub stand-in stores exactly what is committed and refuses what the Hub refuses."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from .hub_server import DEFAULT_TOKEN, git_blob_sha1


def _request(method: str, url: str, body: bytes, headers: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_commit_tree_paths_info_and_deletes(hub, repo_name):
    api = HfApi()
    repo_id = repo_name("raw")
    api.create_repo(repo_id)
    big = bytes(range(256)) * 64  # binary: goes through LFS
    first = api.create_commit(repo_id, [
        CommitOperationAdd("a/notes.txt", b"hello\n"),
        CommitOperationAdd("a/b/weights.bin", big),
        CommitOperationAdd("top.json", b"{}"),
    ], commit_message="add")
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    assert set(tree) == {".gitattributes", "a", "a/b", "a/notes.txt", "a/b/weights.bin", "top.json"}
    assert tree["a/notes.txt"].blob_id == git_blob_sha1(b"hello\n") and tree["a/notes.txt"].lfs is None
    assert tree["a/b/weights.bin"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert tree["a/b/weights.bin"].size == len(big)
    assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="a")] == ["a/b", "a/notes.txt"]
    info = api.get_paths_info(repo_id, ["a/notes.txt", "a/b", "missing"])
    assert [e.path for e in info] == ["a/notes.txt", "a/b"]

    api.create_commit(repo_id, [CommitOperationDelete("a/b/"), CommitOperationDelete("top.json")],
                      commit_message="delete")
    assert set(hub.files("model", repo_id)) == {".gitattributes", "a/notes.txt"}
    # old revisions stay readable
    path = hf_hub_download(repo_id, "a/b/weights.bin", revision=first.oid)
    assert open(path, "rb").read() == big
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "a/b/weights.bin", force_download=True)
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_tree(repo_id, revision="no-such-branch").__iter__().__next__()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_name("never-created"))
    assert api.model_info(repo_id).sha == api.list_repo_commits(repo_id)[0].commit_id


def test_lfs_integrity_is_checked(hub, repo_name):
    api = HfApi()
    repo_id = repo_name("lfs")
    api.create_repo(repo_id)
    data = b"\0" * 100
    oid = hashlib.sha256(data).hexdigest()
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    # an upload whose bytes do not hash to the announced oid is refused
    status, _ = _request("PUT", f"{hub.endpoint}/_lfs/models/{repo_id}/objects/{oid}", b"other bytes", headers)
    assert status == 400
    # a commit referencing an LFS object that was never uploaded is refused, and nothing is committed
    line = '{"key": "header", "value": {"summary": "x"}}\n' + (
        '{"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "%s", "size": 100}}\n' % oid)
    status, text = _request("POST", f"{hub.endpoint}/api/models/{repo_id}/commit/main", line.encode(),
                            {**headers, "Content-Type": "application/x-ndjson"})
    assert status == 422 and "never uploaded" in text
    assert set(hub.files("model", repo_id)) == {".gitattributes"}
    # no token, a wrong token or the "<HUB_TOKEN>" placeholder of TrainingArguments.to_dict(): no commit
    for auth in ({}, {"Authorization": "Bearer x"}, {"Authorization": "Bearer <HUB_TOKEN>"}):
        status, _ = _request("POST", f"{hub.endpoint}/api/models/{repo_id}/commit/main", line.encode(),
                             {**auth, "Content-Type": "application/x-ndjson"})
        assert status == 401, auth
