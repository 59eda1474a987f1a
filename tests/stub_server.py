"""A local OpenAI-compatible chat server for the endpoint tests: started and stopped by the
``stub_endpoint`` fixture (conftest), it stands in for a remote vLLM/TGI server that cannot run here."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class StubChat(BaseHTTPRequestHandler):
    fail_first = 0
    seen: list[dict] = []
    reply: str | None = None  # when set, every chat gets this answer

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        last = body["messages"][-1]["content"]
        if type(self).reply is not None:
            text = type(self).reply
        elif last.startswith(("Does", "Is", "Could", "Identify")):
            text = "The response helps with harm; it should decline."
        elif any("unsafe-rewrite" in m["content"] for m in body["messages"]):
            text = "Sure, here is exactly how to do it."
        elif any("copycat" in m["content"] for m in body["messages"]):
            text = body["messages"][5]["content"]  # the few-shot example's revision, word for word
        else:
            text = "I can't help with that, but I can suggest a safe alternative."
        payload = {"choices": [{"message": {"role": "assistant", "content": text}}],
                   "usage": {"prompt_tokens": 50, "completion_tokens": len(text.split())}}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        return


