"""A loopback server speaking the subset of the Hugging Face Hub HTTP API that `huggingface_hub` uses to create a repo
and upload a folder (whoami, repos/create, validate-yaml, preupload, commit), keeping what it received in memory. Every
file is accepted as a "regular" (inline base64) upload, so no LFS server is needed."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubState:
    def __init__(self, token: str, user: str = "tester"):
        self.token, self.user = token, user
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "files": {path: bytes}, "commits": [...]}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)


def make_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {state.token}"

        def do_GET(self):  # noqa: N802
            state.requests.append(("GET", self.path, dict(self.headers)))
            parts = self.path.split("?")[0].split("/")  # /api/models/{org}/{name}[/revision/{rev}]: repo info
            if len(parts) >= 7 and parts[:3] == ["", "api", "models"] and parts[5] == "tree":  # list_repo_files
                repo = state.repos.get(f"{parts[3]}/{parts[4]}")
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"})
                return self._reply(200, [{"type": "file", "path": f, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                                         for f, data in sorted(repo["files"].items())])  # fmt: skip
            if len(parts) >= 5 and parts[:3] == ["", "api", "models"]:
                repo_id = f"{parts[3]}/{parts[4]}"
                if repo_id not in state.repos:
                    return self._reply(404, {"error": f"Repository not found: {repo_id}"})
                repo = state.repos[repo_id]
                return self._reply(200, {"id": repo_id, "modelId": repo_id, "private": repo["private"],
                                         "sha": "0" * 40, "siblings": [{"rfilename": f} for f in repo["files"]]})
            if self.path.startswith("/api/whoami-v2"):
                if not self._authorized():
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return self._reply(200, {"type": "user", "name": state.user, "auth": {"type": "access_token"}})
            return self._reply(404, {"error": f"not served: GET {self.path}"})

        def do_POST(self):  # noqa: N802
            body = self._body()
            state.requests.append(("POST", self.path, dict(self.headers)))
            if not self._authorized():
                return self._reply(401, {"error": "Invalid credentials in Authorization header"})
            path = self.path.split("?")[0]
            if path == "/api/repos/create":
                req = json.loads(body)
                repo_id = f"{req.get('organization') or state.user}/{req['name']}"
                private = req.get("visibility", "private" if req.get("private") else "public") == "private"
                state.repos.setdefault(repo_id, {"private": private, "files": {}, "commits": [], "create": req})
                return self._reply(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
            if path == "/api/validate-yaml":
                return self._reply(200, {})
            parts = path.split("/")  # /api/models/{org}/{name}/{preupload|commit}/{revision}
            if len(parts) >= 7 and parts[:3] == ["", "api", "models"] and parts[5] in ("preupload", "commit"):
                repo_id = f"{parts[3]}/{parts[4]}"
                if repo_id not in state.repos:
                    return self._reply(404, {"error": f"Repository not found: {repo_id}"})
                if parts[5] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})  # fmt: skip
                lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                repo = state.repos[repo_id]
                for item in lines:
                    if item["key"] == "file":
                        value = item["value"]
                        repo["files"][value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "deletedFile":
                        repo["files"].pop(item["value"]["path"], None)
                repo["commits"].append(next(x["value"] for x in lines if x["key"] == "header"))
                return self._reply(200, {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{'0' * 40}",
                                         "commitOid": "0" * 40})  # fmt: skip
            return self._reply(404, {"error": f"not served: POST {self.path}"})

    return Handler


class LoopbackHub:
    """`with LoopbackHub(token) as hub:` -> hub.endpoint (http://127.0.0.1:PORT), hub.state."""

    def __init__(self, token: str):
        self.state = HubState(token)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "LoopbackHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
