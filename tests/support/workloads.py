"""A workload that serves HTTP, as the supervisor and workload tests run it."""

from __future__ import annotations

# A tiny HTTP server: /healthz answers 200 while the file `ok` exists in its directory, else 500.
SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if os.path.exists('ok') else 500
        self.send_response(code); self.end_headers(); self.wfile.write(b'hi from ' + os.environ['CB_INSTANCE'].encode())
    def log_message(self, *a): pass
print('serving', os.environ['PORT'], flush=True)
http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT'])), H).serve_forever()
"""
