#!/usr/bin/env python3
"""A test origin for the shared-bucket scripts: serves a directory like
python's http.server (GET and HEAD, byte ranges, 404, directories redirected
to their slash form and listed), sending bodies at most
RATE bytes per second per request, so a download can be caught mid-way.
Logs each request as http.server does ('"GET /path HTTP/1.1" 200 -') to
stderr, and its port as http.server does ("Serving HTTP on 127.0.0.1 port N").

Usage: slow_origin.py DIR RATE_BYTES_PER_S
"""
import html
import http.server
import os
import re
import sys
import time

ROOT = os.path.abspath(sys.argv[1])
RATE = float(sys.argv[2])
CHUNK = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        self.serve(body=False)

    def do_GET(self):
        self.serve(body=True)

    def serve(self, body):
        url_path = self.path.split("?")[0]
        path = os.path.normpath(os.path.join(ROOT, url_path.lstrip("/")))
        if path.startswith(ROOT) and os.path.isdir(path):
            # As http.server: a redirect to the slash form, which lists.
            if not url_path.endswith("/"):
                self.send_response(301)
                self.send_header("Location", url_path + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            names = sorted(os.listdir(path))
            page = "".join(
                '<li><a href="%s%s">%s</a></li>\n'
                % (html.escape(n), "/" if os.path.isdir(os.path.join(path, n)) else "", html.escape(n))
                for n in names
            )
            data = ("<html><body><ul>\n%s</ul></body></html>\n" % page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        if not path.startswith(ROOT) or not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            if m.group(2):
                end = min(int(m.group(2)), size - 1)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        else:
            self.send_response(200)
        st = os.stat(path)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"%x-%x"' % (st.st_ino, st.st_mtime_ns))
        self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
        self.end_headers()
        if not body:
            return
        began = time.monotonic()
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    break
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(data)
                left -= len(data)
                ahead = sent / RATE - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


srv = Server(("127.0.0.1", 0), Handler)
print("Serving HTTP on 127.0.0.1 port %d" % srv.server_address[1], file=sys.stderr, flush=True)
srv.serve_forever()
