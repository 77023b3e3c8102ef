"""EC2's instance metadata service, the part a spot worker reads: IMDSv2 only.

    python3 imds.py ADDRESS PORT NOTICE_FILE LOG_FILE

PUT /latest/api/token gives a session token; GET /latest/meta-data/spot/instance-action
without it is refused (401, as with http_tokens = "required"), and with it answers 404
until NOTICE_FILE exists, then its content: the test "sends" the notice by writing it.
Every request is logged to LOG_FILE as one JSON line: method, path, whether the token
was right, the status given.
"""

from __future__ import annotations

import json
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN = secrets.token_hex(16)
NOTICE = "/latest/meta-data/spot/instance-action"


class Metadata(BaseHTTPRequestHandler):
    notice_file: Path
    log_file: Path

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"):
            self._answer(200, TOKEN)
        else:
            self._answer(400, "")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self._answer(401, "")
        elif self.path != NOTICE or not self.notice_file.exists():
            self._answer(404, "")
        else:
            self._answer(200, self.notice_file.read_text())

    def _answer(self, status: int, body: str) -> None:
        with self.log_file.open("a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path, "status": status,
                                  "token": self.headers.get("X-aws-ec2-metadata-token") == TOKEN})
                      + "\n")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass  # the JSON log says it all


def main() -> None:
    address, port, notice_file, log_file = sys.argv[1:]
    Metadata.notice_file, Metadata.log_file = Path(notice_file), Path(log_file)
    ThreadingHTTPServer((address, int(port)), Metadata).serve_forever()


if __name__ == "__main__":
    main()
