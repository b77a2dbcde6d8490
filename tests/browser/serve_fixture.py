#!/usr/bin/env python3
"""A static stand-in for predmon's HTTP server, for developing the page test without the daemon.

Serves, on 127.0.0.1 only:
  /                 the rendered page (--html; render it with
                    PREDMON_PAGE_OUT=/tmp/page.html cargo test page::tests::write_fixture_page -- --ignored)
  /api/v1/models    the JSON fixture (--api, default fixture_api.json beside this file)
  /metrics          a one-line Prometheus text body
Everything else is 404. Prints "listening on http://127.0.0.1:PORT" once ready (--port 0 picks a free port).
"""
import argparse
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--html", required=True, help="rendered index.html")
    ap.add_argument("--api", default=os.path.join(HERE, "fixture_api.json"))
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                with open(args.html, "rb") as f:  # re-read: the page can be re-rendered while serving
                    self._send(200, "text/html; charset=utf-8", f.read())
            elif path == "/api/v1/models":
                with open(args.api, "rb") as f:
                    self._send(200, "application/json", f.read())
            elif path == "/metrics":
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", b'predmon_build_info{version="fixture"} 1\n')
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        do_HEAD = do_GET

        def log_message(self, fmt, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
