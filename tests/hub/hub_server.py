"""A small local stand-in for the Hugging Face Hub HTTP API (pure Python standard library).

It implements the part of the Hub's API that ``huggingface_hub`` (2.x, legacy LFS path, i.e. with
``HF_HUB_DISABLE_XET=1``), ``transformers`` and ``datasets`` use to push and pull repositories:

upload side
    ``POST /api/repos/create``                                  create a model / dataset repo (409 if it exists)
    ``POST /api/validate-yaml``                                 README front-matter check
    ``POST /api/{type}s/{repo}/preupload/{rev}``                ``regular`` or ``lfs`` per file (+ remote oid)
    ``POST /{prefix}{repo}.git/info/lfs/objects/batch``         LFS batch API, ``basic`` transfer
    ``PUT  /_lfs/{type}s/{repo}/objects/{sha256}``              LFS object upload (content checked against the oid)
    ``POST /_lfs/{type}s/{repo}/verify``                        LFS verify
    ``POST /api/{type}s/{repo}/commit/{rev}``                   NDJSON commit: header, file (base64), lfsFile,
                                                                deletedFile, deletedFolder
    ``GET  /api/whoami-v2``, ``GET /api/agent-harnesses`` (empty registry)

download side
    ``GET  /api/{type}s/{repo}[/revision/{rev}]``               repo info (sha, siblings, cardData-less)
    ``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]``            tree listing (``recursive``)
    ``POST /api/{type}s/{repo}/paths-info/{rev}``               paths info
    ``GET  /api/{type}s/{repo}/refs``, ``/commits/{rev}``       refs and history
    ``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}``           file content with ETag / X-Repo-Commit /
                                                                X-Linked-Etag / X-Linked-Size, Range requests

It is honest: every commit is stored as an immutable snapshot (path -> blob) and the server serves exactly the
committed bytes, by branch name or by commit sha.  Blobs live on disk under ``root``.  Failures can be injected:
``server.fail_next("commit", status=500)`` makes the next request(s) to that endpoint answer with an error.
Every request is recorded in ``server.requests`` as ``(method, endpoint_name, path, status)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_USER = "hf-vcr-tester"
DEFAULT_TOKEN = "hf_dummy_local_token"  # the token tests/hub/conftest.py puts in HF_TOKEN
LFS_EXTENSIONS = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".parquet", ".arrow", ".npy", ".npz", ".onnx",
    ".msgpack", ".zip", ".gz", ".tar", ".model", ".pkl", ".pickle",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # like the Hub: large files go to LFS whatever their extension
REPO_TYPES = ("model", "dataset", "space")
GITATTRIBUTES = b"".join(
    f"*{ext} filter=lfs diff=lfs merge=lfs -text\n".encode() for ext in LFS_EXTENSIONS
)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


@dataclass
class StoredFile:
    sha256: str
    size: int
    lfs: bool

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    def git_oid(self, data_loader) -> str:
        return git_blob_sha1(self.pointer) if self.lfs else git_blob_sha1(data_loader(self.sha256))


@dataclass
class Commit:
    oid: str
    title: str
    description: str
    date: str
    parent: str | None
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: set[str] = field(default_factory=set)  # LFS objects uploaded to this repo (like the Hub, per repo)


class HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


class LocalHubServer:
    """The Hub stand-in.  ``start()`` binds 127.0.0.1 on a free port and serves from a daemon thread."""

    def __init__(self, root: str | None = None, *, user: str = DEFAULT_USER):
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="hf_vcr_hub_")
        self.blob_dir = os.path.join(self.root, "blobs")
        os.makedirs(self.blob_dir, exist_ok=True)
        self.user = user
        self.accepted_tokens: set[str] = {DEFAULT_TOKEN}  # write tokens of ``user``; add with accept_token()
        self.rejected_tokens: list[str] = []
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, str, int]] = []
        self._failures: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHubServer":
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def accept_token(self, token: str) -> None:
        """Let ``token`` write (besides :data:`DEFAULT_TOKEN`)."""
        self.accepted_tokens.add(token)

    # ------------------------------------------------------------------ failure injection
    def fail_next(self, endpoint_name: str, *, status: int = 500, message: str = "injected failure", times: int = 1):
        """Answer the next ``times`` requests to ``endpoint_name`` (e.g. ``"commit"``, ``"preupload"``,
        ``"lfs-upload"``, ``"lfs-batch"``, ``"create-repo"``, ``"resolve"``) with ``status``."""
        with self._lock:
            self._failures.setdefault(endpoint_name, []).extend([(status, message)] * times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _pop_failure(self, endpoint_name: str) -> tuple[int, str] | None:
        with self._lock:
            queue = self._failures.get(endpoint_name)
            if queue:
                return queue.pop(0)
        return None

    # ------------------------------------------------------------------ storage
    def _blob_path(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HubError(400, f"invalid sha256 oid {sha256!r}")
        return os.path.join(self.blob_dir, sha256)

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self._blob_path(sha256)
        return os.path.isfile(path) and (size is None or os.path.getsize(path) == size)

    def read_blob(self, sha256: str) -> bytes:
        with open(self._blob_path(sha256), "rb") as f:
            return f.read()

    def write_blob(self, data: bytes, expected_sha256: str | None = None) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and sha != expected_sha256:
            raise HubError(400, f"content sha256 {sha} does not match the oid {expected_sha256}")
        path = self._blob_path(sha)
        if not os.path.exists(path):
            tmp = f"{path}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return sha

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository {repo_type}s/{repo_id} not found", "RepoNotFound")
        return repo

    def resolve_revision(self, repo: Repo, revision: str) -> Commit:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> tuple[Repo, bool]:
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return self.repos[(repo_type, repo_id)], False
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now_iso())
            self.repos[(repo_type, repo_id)] = repo
            sha = self.write_blob(GITATTRIBUTES)
            self._commit(repo, "main", "initial commit", "", {".gitattributes": StoredFile(sha, len(GITATTRIBUTES), False)})
            return repo, True

    def _commit(self, repo: Repo, branch: str, title: str, description: str, files: dict[str, StoredFile]) -> Commit:
        parent = repo.branches.get(branch)
        seed = json.dumps([parent, title, sorted((k, v.sha256) for k, v in files.items()), time.time_ns()])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(oid=oid, title=title, description=description, date=_now_iso(), parent=parent, files=files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Snapshot of a repo's files at ``revision`` as ``{path: bytes}`` (for assertions in tests)."""
        with self._lock:
            repo = self.get_repo(repo_type, repo_id)
            commit = self.resolve_revision(repo, revision)
            return {path: self.read_blob(f.sha256) for path, f in commit.files.items()}

    def commit_count(self, repo_type: str, repo_id: str, branch: str = "main") -> int:
        with self._lock:
            repo = self.get_repo(repo_type, repo_id)
            n, oid = 0, repo.branches.get(branch)
            while oid is not None:
                n, oid = n + 1, repo.commits[oid].parent
            return n

    # ------------------------------------------------------------------ JSON views
    def _file_entry(self, path: str, f: StoredFile, commit: Commit | None = None, expand: bool = False) -> dict:
        entry = {"type": "file", "oid": f.git_oid(self.read_blob), "size": f.size, "path": path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        if expand and commit is not None:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _folder_entry(self, path: str, commit: Commit | None = None, expand: bool = False) -> dict:
        oid = hashlib.sha1(f"tree:{commit.oid if commit else ''}:{path}".encode()).hexdigest()
        entry = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if expand and commit is not None:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    @staticmethod
    def _folders(commit: Commit) -> set[str]:
        folders = set()
        for path in commit.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folders.add("/".join(parts[:i]))
        return folders

    def _repo_info(self, repo: Repo, commit: Commit) -> dict:
        siblings = []
        for path, f in sorted(commit.files.items()):
            sib = {"rfilename": path, "size": f.size, "blobId": f.git_oid(self.read_blob)}
            if f.lfs:
                sib["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": len(f.pointer)}
            siblings.append(sib)
        return {
            "_id": hashlib.md5(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }


_REPO_API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$")
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_LFS_OBJECT = re.compile(r"^/_lfs/(models|datasets|spaces)/([^/]+/[^/]+)/objects/([0-9a-f]{64})$")
_LFS_VERIFY = re.compile(r"^/_lfs/(models|datasets|spaces)/([^/]+/[^/]+)/verify$")
_LFS_BATCH = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+?)\.git/info/lfs/objects/batch$")


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output quiet
        pass

    # --------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline().strip()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.hub.requests.append((self.command, getattr(self, "_endpoint_name", "?"), self.path, status))

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubError):
        headers = {"X-Error-Message": err.message.replace("\n", " ")}
        if err.error_code:
            headers["X-Error-Code"] = err.error_code
        self._json(err.status, {"error": err.message}, headers)

    def _dispatch(self):
        self._endpoint_name = "?"
        try:
            body = self._body() if self.command in ("POST", "PUT") else b""
            self._route(body)
        except HubError as err:
            self._error(err)
        except Exception as err:  # a bug in the stand-in: make it visible to the client
            self._error(HubError(500, f"local hub internal error: {type(err).__name__}: {err}"))

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    def _check_failure(self, name: str):
        self._endpoint_name = name
        failure = self.hub._pop_failure(name)
        if failure is not None:
            status, message = failure
            raise HubError(status, f"{message} ({name})")

    def _require_token(self):
        # like the Hub: a placeholder ("<HUB_TOKEN>", what TrainingArguments.to_dict() writes) or unknown token is refused
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else ""
        if token not in self.hub.accepted_tokens:
            self.hub.rejected_tokens.append(token)
            raise HubError(401, "Invalid credentials in Authorization header")

    # --------------------------------------------------------------- routing
    def _route(self, body: bytes):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        method = self.command
        hub = self.hub

        if path == "/api/whoami-v2" and method == "GET":
            self._check_failure("whoami")
            self._require_token()
            return self._json(200, {"type": "user", "name": hub.user, "fullname": hub.user, "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if path == "/api/agent-harnesses" and method == "GET":
            self._endpoint_name = "agent-harnesses"
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(body)
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(body)
        m = _LFS_OBJECT.match(path)
        if m and method == "PUT":
            return self._lfs_put(hub.get_repo(m.group(1)[:-1], m.group(2)), m.group(3), body)
        m = _LFS_VERIFY.match(path)
        if m and method == "POST":
            return self._lfs_verify(hub.get_repo(m.group(1)[:-1], m.group(2)), body)
        m = _LFS_BATCH.match(path)
        if m and method == "POST":
            return self._lfs_batch(_repo_type(m.group(1)), m.group(2), body)
        m = _REPO_API.match(path)
        if m:
            repo_type, repo_id, rest = m.group(1)[:-1], m.group(2), m.group(3) or ""
            return self._repo_api(method, repo_type, repo_id, rest, query, body)
        m = _RESOLVE.match(path)
        if m and method in ("GET", "HEAD"):
            return self._resolve(_repo_type(m.group(1)), m.group(2), unquote(m.group(3)), unquote(m.group(4)))
        self._endpoint_name = "unknown"
        raise HubError(404, f"local hub: no route for {method} {path}")

    # --------------------------------------------------------------- upload side
    def _create_repo(self, body: bytes):
        self._check_failure("create-repo")
        self._require_token()
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        name = payload.get("name")
        if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise HubError(400, f"invalid repo name {name!r}")
        repo_id = f"{payload.get('organization') or self.hub.user}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        _, created = self.hub.create_repo(repo_type, repo_id, private)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.endpoint}/{prefix}{repo_id}"
        if not created:
            return self._json(409, {"error": "You already created this repo", "url": url},
                              {"X-Error-Message": "You already created this repo"})
        return self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, body: bytes):
        self._check_failure("validate-yaml")
        payload = json.loads(body or b"{}")
        content = payload.get("content", "")
        errors = []
        if content.startswith("---"):
            lines = content.splitlines()
            if not any(line.strip() == "---" for line in lines[1:]):
                errors.append({"message": "YAML front matter is not closed by a '---' line"})
            else:
                end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
                for i, line in enumerate(lines[1:end], start=2):
                    if "\t" in line[: len(line) - len(line.lstrip())]:
                        errors.append({"message": f"line {i}: tabs are not allowed in YAML indentation"})
        if errors:
            return self._json(400, {"errors": errors, "warnings": []})
        return self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo: Repo, revision: str, body: bytes):
        self._check_failure("preupload")
        self._require_token()
        commit = self.hub.resolve_revision(repo, revision)
        payload = json.loads(body or b"{}")
        answer = []
        for f in payload.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            path, size = f["path"], int(f["size"])
            lfs = size >= LFS_SIZE_THRESHOLD or path.lower().endswith(LFS_EXTENSIONS) or b"\0" in sample
            existing = commit.files.get(path)
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else existing.git_oid(self.hub.read_blob)
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return self._json(200, {"files": answer, "commitOid": commit.oid})

    def _lfs_batch(self, repo_type: str, repo_id: str, body: bytes):
        self._check_failure("lfs-batch")
        self._require_token()
        repo = self.hub.get_repo(repo_type, repo_id)
        payload = json.loads(body or b"{}")
        if payload.get("operation") != "upload":
            raise HubError(400, "only the 'upload' LFS operation is supported")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "only the 'basic' LFS transfer is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry = {"oid": oid, "size": size, "authenticated": True}
            if not (oid in repo.lfs_objects and self.hub.has_blob(oid, size)):
                base = f"{self.hub.endpoint}/_lfs/{repo.repo_type}s/{repo.repo_id}"
                entry["actions"] = {
                    "upload": {"href": f"{base}/objects/{oid}", "header": {}},
                    "verify": {"href": f"{base}/verify", "header": {}},
                }
            objects.append(entry)
        return self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                          content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, repo: Repo, oid: str, body: bytes):
        self._check_failure("lfs-upload")
        self.hub.write_blob(body, expected_sha256=oid)
        with self.hub._lock:
            repo.lfs_objects.add(oid)
        return self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _lfs_verify(self, repo: Repo, body: bytes):
        self._check_failure("lfs-verify")
        payload = json.loads(body or b"{}")
        oid, size = payload.get("oid", ""), payload.get("size")
        if oid not in repo.lfs_objects or not self.hub.has_blob(oid, size):
            raise HubError(404, f"LFS object {oid} of size {size} was not uploaded")
        return self._json(200, {"success": True})

    def _commit(self, repo: Repo, revision: str, body: bytes):
        self._check_failure("commit")
        self._require_token()
        if "ndjson" not in self.headers.get("Content-Type", ""):
            raise HubError(400, "commit payload must be application/x-ndjson")
        branch = unquote(revision)
        hub = self.hub
        header, adds, deletes, deleted_folders = None, {}, [], []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise HubError(400, f"commit line {n}: invalid JSON ({err})")
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"commit line {n}: unsupported encoding {value.get('encoding')!r}")
                data = base64.b64decode(value["content"])
                adds[_clean_path(value["path"])] = ("regular", data)
            elif key == "lfsFile":
                if value.get("algo", "sha256") != "sha256":
                    raise HubError(400, f"commit line {n}: unsupported LFS algo")
                adds[_clean_path(value["path"])] = ("lfs", value["oid"])
            elif key == "deletedFile":
                deletes.append(_clean_path(value["path"]))
            elif key == "deletedFolder":
                deleted_folders.append(_clean_path(value["path"]).rstrip("/"))
            else:
                raise HubError(400, f"commit line {n}: unknown key {key!r}")
        if header is None or not header.get("summary"):
            raise HubError(400, "commit payload has no header with a summary")
        with hub._lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = repo.commits[repo.branches[branch]]
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for p in deletes:
                if p not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {p}", "EntryNotFound")
                del files[p]
            for folder in deleted_folders:
                for p in [p for p in files if p.startswith(folder + "/")]:
                    del files[p]
            for p, (mode, payload) in adds.items():
                if mode == "regular":
                    sha = hub.write_blob(payload)
                    files[p] = StoredFile(sha, len(payload), False)
                else:
                    if payload not in repo.lfs_objects or not hub.has_blob(payload):
                        raise HubError(422, f"LFS object {payload} for {p} was never uploaded")
                    files[p] = StoredFile(payload, os.path.getsize(hub._blob_path(payload)), True)
            commit = hub._commit(repo, branch, header["summary"], header.get("description", ""), files)
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return self._json(200, {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{hub.endpoint}/{prefix}{repo.repo_id}/commit/{commit.oid}",
            "pullRequestUrl": None,
        })

    # --------------------------------------------------------------- read side
    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: str, query: dict, body: bytes):
        hub = self.hub
        parts = rest.split("/", 1) if rest else []
        action = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else ""
        if action in ("commit", "preupload") and method == "POST":
            self._endpoint_name = action
            repo = hub.get_repo(repo_type, repo_id)
            return (self._commit if action == "commit" else self._preupload)(repo, arg or "main", body)
        if method not in ("GET", "HEAD", "POST"):
            raise HubError(405, f"method {method} not allowed on {self.path}")
        if action in ("", "revision") and method == "GET":
            self._check_failure("repo-info")
            with hub._lock:
                repo = hub.get_repo(repo_type, repo_id)
                commit = hub.resolve_revision(repo, arg or "main")
                return self._json(200, hub._repo_info(repo, commit))
        if action == "tree" and method == "GET":
            self._check_failure("tree")
            revision, _, sub = arg.partition("/")
            return self._tree(hub.get_repo(repo_type, repo_id), revision, unquote(sub), query)
        if action == "paths-info" and method == "POST":
            self._check_failure("paths-info")
            return self._paths_info(hub.get_repo(repo_type, repo_id), arg, body)
        if action == "refs" and method == "GET":
            self._check_failure("refs")
            repo = hub.get_repo(repo_type, repo_id)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
            return self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        if action == "commits" and method == "GET":
            self._check_failure("commits")
            with hub._lock:
                repo = hub.get_repo(repo_type, repo_id)
                commit, out = hub.resolve_revision(repo, arg or "main"), []
                while commit is not None:
                    out.append({"id": commit.oid, "title": commit.title, "message": commit.description,
                                "date": commit.date, "authors": [{"user": hub.user}]})
                    commit = repo.commits.get(commit.parent) if commit.parent else None
            return self._json(200, out)
        raise HubError(404, f"local hub: no route for {method} {self.path}")

    def _tree(self, repo: Repo, revision: str, sub: str, query: dict):
        hub = self.hub
        recursive = (query.get("recursive", ["false"])[0]).lower() in ("1", "true")
        expand = (query.get("expand", ["false"])[0]).lower() in ("1", "true")
        with hub._lock:
            commit = hub.resolve_revision(repo, revision or "main")
            folders = hub._folders(commit)
            sub = sub.strip("/")
            if sub and sub not in folders:
                raise HubError(404, f"{sub} does not exist on {revision}", "EntryNotFound")
            prefix = sub + "/" if sub else ""
            entries = []
            for folder in sorted(folders):
                if folder.startswith(prefix) and (recursive or "/" not in folder[len(prefix):]):
                    entries.append(hub._folder_entry(folder, commit, expand))
            for path, f in sorted(commit.files.items()):
                if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]):
                    entries.append(hub._file_entry(path, f, commit, expand))
        return self._json(200, entries)

    def _paths_info(self, repo: Repo, revision: str, body: bytes):
        hub = self.hub
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            payload = json.loads(body or b"{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0].lower() == "true"
        with hub._lock:
            commit = hub.resolve_revision(repo, revision or "main")
            folders = hub._folders(commit)
            out = []
            for p in paths:
                p = p.strip("/")
                if p in commit.files:
                    out.append(hub._file_entry(p, commit.files[p], commit, expand))
                elif p in folders:
                    out.append(hub._folder_entry(p, commit, expand))
        return self._json(200, out)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
        self._check_failure("resolve")
        hub = self.hub
        with hub._lock:
            repo = hub.get_repo(repo_type, repo_id)
            commit = hub.resolve_revision(repo, revision)
            stored = commit.files.get(path)
            if stored is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            data = hub.read_blob(stored.sha256)
        git_oid = stored.git_oid(lambda _sha: data)
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.sha256 if stored.lfs else git_oid}"',
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(stored.size)
        status, payload = 200, data
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m:
                raise HubError(416, f"unsupported Range {rng!r}")
            start_s, end_s = m.groups()
            if start_s == "":
                start, end = max(0, len(data) - int(end_s)), len(data) - 1
            else:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            if start >= len(data) and len(data) > 0:
                self._endpoint_name = "resolve"
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            payload = data[start:end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        headers["Content-Length"] = str(len(payload))
        return self._send(status, payload, headers, content_type="application/octet-stream")


def _repo_type(prefix: str | None) -> str:
    return {None: "model", "datasets": "dataset", "spaces": "space"}[prefix]


def _clean_path(path: str) -> str:
    path = path.replace("\\", "/").lstrip("/")
    if not path or any(part in ("", ".", "..") for part in path.rstrip("/").split("/")):
        raise HubError(400, f"invalid path in repo: {path!r}")
    return path


__all__ = ["LocalHubServer", "git_blob_sha1", "lfs_pointer"]
