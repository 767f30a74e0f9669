"""A small Hub-compatible HTTP server for tests, on 127.0.0.1: the documented endpoints `huggingface_hub` uses to
create repos, branches and tags, commit files ("regular" upload mode: contents travel inside the commit, so no LFS
server is needed), read revision info, list a revision's files and resolve files. Repos live in memory. Private
repos answer as absent without the right token, as the Hub does.
"""

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Repo:
    private: bool
    commits: dict = field(default_factory=dict)  # sha -> {path: bytes}
    refs: dict = field(default_factory=dict)  # branch, tag or "refs/pr/N" -> sha
    pull_requests: int = 0

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class HubState:
    def __init__(self, token: str, user: str = "tester"):
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []

    def new_commit(self, repo: Repo, files: dict, parent: str | None, summary: str) -> str:
        digest = hashlib.sha1((parent or "").encode() + summary.encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = files
        return sha


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState = None  # set by start_hub_server

    def log_message(self, *args):  # quiet
        pass

    # --- helpers ---------------------------------------------------------------------------------------------------

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.state.token}"

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, head_only: bool = False):
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message,
                                  "Content-Type": "application/json"}, head_only=head_only)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _readable_repo(self, repo_id: str, head_only=False) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._error(401, "RepoNotFound", f"Repository Not Found for {repo_id}", head_only)
            return None
        return repo

    def _writable_repo(self, repo_id: str) -> Repo | None:
        if not self._authorized():
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return None
        return self._readable_repo(repo_id)

    # --- routes ----------------------------------------------------------------------------------------------------

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    def _route(self, method: str):
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        with self.state.lock:
            self.state.requests.append(f"{method} {url.path}")
            if parts[:2] == ["api", "whoami-v2"]:
                return self._whoami()
            if method == "POST" and parts[:2] == ["api", "validate-yaml"]:  # model card metadata, before a commit
                self._body()
                return self._json(200, {"errors": [], "warnings": []})
            if method == "POST" and parts[:3] == ["api", "repos", "create"]:
                return self._create_repo(json.loads(self._body() or b"{}"))
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id, rest = "/".join(parts[2:4]), parts[4:]
                if method == "POST" and rest[:1] == ["preupload"]:
                    return self._preupload(repo_id, json.loads(self._body()))
                if method == "POST" and rest[:1] == ["commit"]:
                    return self._commit(repo_id, "/".join(rest[1:]), query.get("create_pr") == ["1"])
                if method == "POST" and rest[:1] == ["branch"]:
                    return self._create_ref(repo_id, "/".join(rest[1:]), json.loads(self._body() or b"{}"))
                if method == "POST" and rest[:1] == ["tag"]:
                    body = json.loads(self._body() or b"{}")
                    return self._create_ref(repo_id, body["tag"], {"startingPoint": "/".join(rest[1:])})
                if method == "POST" and rest == ["discussions"]:
                    return self._open_pull_request(repo_id, json.loads(self._body() or b"{}"))
                if method == "GET" and rest[:1] == ["discussions"] and len(rest) == 2:
                    return self._pull_request(repo_id, int(rest[1]))
                if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                    return self._tree(repo_id, rest[1])
                if method == "GET" and (not rest or rest[0] == "revision"):
                    return self._repo_info(repo_id, "/".join(rest[1:]) or "main")
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(method, "/".join(parts[:2]), parts[3:])
            self._error(404, "NotFound", f"no route for {method} {url.path}")

    def _whoami(self):
        if not self._authorized():
            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        self._json(200, {"type": "user", "name": self.state.user, "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def _create_repo(self, body):
        if not self._authorized():
            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        repo_id = f"{body.get('organization') or self.state.user}/{body['name']}"
        url = f"http://{self.headers['Host']}/{repo_id}"
        if repo_id in self.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        repo = Repo(private=bool(body.get("private")) or body.get("visibility") == "private")
        repo.refs["main"] = self.state.new_commit(repo, {".gitattributes": b"*.safetensors filter=lfs\n"}, None,
                                                  "initial commit")
        self.state.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id})

    def _create_ref(self, repo_id, name, body):
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        if name in repo.refs:
            return self._error(409, "Conflict", f"Reference {name} already exists")
        start = repo.resolve(body.get("startingPoint") or "main")
        if start is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {body.get('startingPoint')}")
        repo.refs[name] = start
        self._json(200, {})

    def _open_pull_request(self, repo_id, body):
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        repo.pull_requests += 1
        repo.refs[f"refs/pr/{repo.pull_requests}"] = repo.refs["main"]
        self._json(200, {"num": repo.pull_requests, "title": body.get("title", "")})

    def _pull_request(self, repo_id, number):
        repo = self._readable_repo(repo_id)
        if repo is None:
            return
        if f"refs/pr/{number}" not in repo.refs:
            return self._error(404, "NotFound", f"no pull request {number}")
        self._json(200, {"title": "pull request", "num": number, "author": {"name": self.state.user},
                         "createdAt": "2026-01-01T00:00:00.000Z", "status": "open",
                         "repo": {"name": repo_id, "type": "model"}, "isPullRequest": True, "events": [],
                         "changes": {"base": "refs/heads/main", "mergeCommitId": None}, "filesWithConflicts": [],
                         "diff": ""})

    def _preupload(self, repo_id, body):
        if self._writable_repo(repo_id) is None:
            return
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                 for f in body["files"]]
        self._json(200, {"files": files, "commitOid": None})

    def _commit(self, repo_id, revision, create_pr):
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent = repo.resolve(revision)
        if parent is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = dict(repo.commits[parent])
        for line in lines:
            if line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] in ("deletedFile",):
                files.pop(line["value"]["path"], None)
            elif line["key"] != "header":
                return self._error(400, "BadRequest", f"unsupported commit operation {line['key']}")
        sha = self.state.new_commit(repo, files, parent, header.get("summary", ""))
        host = f"http://{self.headers['Host']}"
        pull_request_url = None
        if create_pr:
            repo.pull_requests += 1
            repo.refs[f"refs/pr/{repo.pull_requests}"] = sha
            pull_request_url = f"{host}/{repo_id}/discussions/{repo.pull_requests}"
        else:
            repo.refs[revision] = sha
        self._json(200, {"commitUrl": f"{host}/{repo_id}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": pull_request_url})

    def _revision(self, repo_id, revision) -> tuple[Repo | None, str | None]:
        """The repo and the commit a revision names; (None, None) once the error is answered."""
        repo = self._readable_repo(repo_id)
        if repo is None:
            return None, None
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None, None
        return repo, sha

    def _repo_info(self, repo_id, revision):
        repo, sha = self._revision(repo_id, revision)
        if repo is not None:
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                             "siblings": [{"rfilename": path} for path in sorted(repo.commits[sha])]})

    def _tree(self, repo_id, revision):
        """Every file of a revision (what `snapshot_download` lists), as if `recursive=true`."""
        repo, sha = self._revision(repo_id, revision)
        if repo is not None:
            files = repo.commits[sha]
            self._json(200, [{"type": "file", "path": path, "size": len(files[path]),
                              "oid": hashlib.sha1(files[path]).hexdigest()} for path in sorted(files)])

    def _resolve(self, method, repo_id, rest):
        head_only = method == "HEAD"
        repo = self._readable_repo(repo_id, head_only)
        if repo is None:
            return
        # The revision may itself hold slashes (refs/pr/1): take the longest prefix that names a revision.
        for cut in range(len(rest) - 1, 0, -1):
            sha = repo.resolve("/".join(rest[:cut]))
            if sha is not None:
                path = "/".join(rest[cut:])
                break
        else:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rest[0]}", head_only)
        content = repo.commits[sha].get(path)
        headers = {"X-Repo-Commit": sha}
        if content is None:
            self.send_response(404)
            for name, value in {**headers, "X-Error-Code": "EntryNotFound",
                                "X-Error-Message": "Entry not found", "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()
            return
        headers.update({"ETag": f'"{hashlib.sha256(content).hexdigest()}"', "Content-Type": "application/octet-stream"})
        self._send(200, content, headers, head_only)


def start_hub_server(token: str) -> tuple[ThreadingHTTPServer, HubState, str]:
    """Start the server on a free port of 127.0.0.1; returns (server, state, endpoint URL)."""
    state = HubState(token)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state, f"http://127.0.0.1:{server.server_address[1]}"
