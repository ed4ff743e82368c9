#!/usr/bin/python3
"""Echo upstream for portcullis tests.

A threaded HTTP/1.1 server (keep-alive) on 127.0.0.1. For any method and
path it answers 200 with a JSON description of the request:

    {"method": ..., "path": <request target as received>,
     "headers": [[name, value], ...]   (in received order, duplicates kept;
                                        names verbatim, see raw_header_pairs),
     "body_sha256": ..., "body_length": ...,
     "request_count_on_connection": n}

Request bodies may use Content-Length or chunked transfer-encoding (decoded
here). Special paths (matched on the last path segments, so they also work
under any route prefix, e.g. /timeout/slow?ms=3000):

    .../slow?ms=N          sleep N ms, then answer as usual
    .../download?bytes=N   N bytes of deterministic data, chunked, with the
                           SHA-256 of the body in X-Body-Sha256
    .../status/NNN         answer with status NNN
    .../close              answer with Connection: close, then close
    .../hop                answer with hop-by-hop headers (Connection: X-Hop,
                           X-Hop: 1, Keep-Alive: timeout=5)
    .../emptyname          answer with a header line of an empty name (": evil")
    /__count               number of requests served (excluding /__count)

Usage: upstream.py [--port N]   (0 = any free port; prints "PORT <n>")
"""

import argparse
import email.parser
import hashlib
import http.client
import http.server
import json
import re
import socket
import sys
import threading
import time
import urllib.parse

_count_lock = threading.Lock()
_request_count = 0

_stream_lock = threading.Lock()
_stream = bytearray()
_stream_blocks = 0


def stream_bytes(n):
    """First n bytes of the deterministic stream sha256(b"portcullis" + counter)."""
    global _stream_blocks
    with _stream_lock:
        while len(_stream) < n:
            _stream.extend(hashlib.sha256(b"portcullis" + _stream_blocks.to_bytes(8, "big")).digest())
            _stream_blocks += 1
        return bytes(_stream[:n])


class BadRequest(Exception):
    pass


def parse_headers_keep_raw(fp, _class=http.client.HTTPMessage):
    """Like http.client.parse_headers, but keeps the raw header lines so that
    the echo shows exactly what arrived (e.g. "Name : value" or folded lines)."""
    lines = []
    while True:
        line = fp.readline(65537)
        if len(line) > 65536:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        lines.append(line)
        if len(lines) > 1000:
            raise http.client.HTTPException("got more than 1000 headers")
    text = b"".join(lines).decode("iso-8859-1")
    msg = email.parser.Parser(_class=_class).parsestr(text + "\r\n")
    msg.raw_lines = [ln.decode("iso-8859-1").rstrip("\r\n") for ln in lines]
    return msg


# http.server looks this up at call time.
http.client.parse_headers = parse_headers_keep_raw


def raw_header_pairs(raw_lines):
    """[[name, value]] from raw lines: name verbatim up to the first colon (so
    stray whitespace stays visible), value without surrounding blanks; an
    obs-fold continuation line is reported as ["", line]."""
    pairs = []
    for line in raw_lines:
        if line[:1] in (" ", "\t") or ":" not in line:
            pairs.append(["", line])
            continue
        name, value = line.split(":", 1)
        pairs.append([name, value.strip(" \t")])
    return pairs


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120

    def version_string(self):
        return "portcullis-test-upstream"

    def setup(self):
        super().setup()
        # Headers and body are written separately; without TCP_NODELAY, Nagle
        # plus delayed ACKs would add ~40 ms to every reused connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_requests = 0

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("upstream: " + (fmt % args) + "\n")

    def __getattr__(self, name):
        # Any method: do_GET, do_POST, do_FOO ... all go to the same handler.
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)

    # -- body reading ---------------------------------------------------

    def _readline(self):
        line = self.rfile.readline(65537)
        if not line:
            raise BadRequest("connection closed in body")
        if len(line) > 65536:
            raise BadRequest("line too long in body")
        return line

    def read_body(self, h):
        te = [v.strip().lower() for v in self.headers.get_all("Transfer-Encoding", [])]
        cl = self.headers.get_all("Content-Length", [])
        if te:
            codings = [c.strip() for v in te for c in v.split(",") if c.strip()]
            if codings[-1:] != ["chunked"]:
                raise BadRequest("unsupported transfer-encoding %r" % te)
            return self.read_chunked(h)
        if cl:
            if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
                raise BadRequest("bad content-length %r" % cl)
            remaining = int(cl[0].strip())
            total = 0
            while remaining > 0:
                data = self.rfile.read(min(remaining, 65536))
                if not data:
                    raise BadRequest("connection closed in body")
                h.update(data)
                total += len(data)
                remaining -= len(data)
            return total
        return 0

    def read_chunked(self, h):
        total = 0
        while True:
            line = self._readline().rstrip(b"\r\n")
            size_s = line.split(b";", 1)[0].strip()
            if not size_s or not re.fullmatch(rb"[0-9A-Fa-f]+", size_s):
                raise BadRequest("bad chunk size %r" % line)
            size = int(size_s, 16)
            if size == 0:
                break
            remaining = size
            while remaining > 0:
                data = self.rfile.read(min(remaining, 65536))
                if not data:
                    raise BadRequest("connection closed in chunk")
                h.update(data)
                total += len(data)
                remaining -= len(data)
            if self.rfile.read(2) != b"\r\n":
                raise BadRequest("missing CRLF after chunk")
        # trailers
        while True:
            line = self._readline()
            if line in (b"\r\n", b"\n"):
                break
        return total

    # -- responses ------------------------------------------------------

    def send_json(self, status, obj, extra_headers=(), close=False):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in extra_headers:
            self.send_header(name, value)
        no_body = status in (204, 304) or 100 <= status < 200 or self.command == "HEAD"
        if status not in (204, 304) and not 100 <= status < 200:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not no_body:
            self.wfile.write(body)
        self.wfile.flush()

    def handle_any(self):
        global _request_count
        self.conn_requests += 1
        target = self.path
        split = urllib.parse.urlsplit(target)
        path = split.path
        query = urllib.parse.parse_qs(split.query)

        if path == "/__count":
            with _count_lock:
                n = _request_count
            self.send_json(200, {"count": n})
            return
        with _count_lock:
            _request_count += 1

        h = hashlib.sha256()
        try:
            length = self.read_body(h)
        except BadRequest as e:
            self.send_json(400, {"error": "bad_request", "message": str(e)}, close=True)
            return

        info = {
            "method": self.command,
            "path": target,
            "headers": raw_header_pairs(getattr(self.headers, "raw_lines", [])),
            "body_sha256": h.hexdigest(),
            "body_length": length,
            "request_count_on_connection": self.conn_requests,
        }

        def qint(name, default):
            try:
                return int(query.get(name, [default])[0])
            except ValueError:
                return default

        m = re.search(r"(?:^|/)status/(\d{3})$", path)
        if re.search(r"(?:^|/)slow$", path):
            time.sleep(max(0, qint("ms", 1000)) / 1000.0)
            self.send_json(200, info)
        elif re.search(r"(?:^|/)download$", path):
            self.send_download(max(0, qint("bytes", 0)))
        elif m:
            self.send_json(int(m.group(1)), info)
        elif re.search(r"(?:^|/)close$", path):
            self.send_json(200, info, close=True)
        elif re.search(r"(?:^|/)hop$", path):
            self.send_json(200, info, extra_headers=[
                ("Connection", "X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
                ("X-End-To-End", "kept")])
        elif re.search(r"(?:^|/)emptyname$", path):
            self.send_json(200, info, extra_headers=[("", "evil")])
        else:
            self.send_json(200, info)

    def send_download(self, n):
        data = stream_bytes(n)
        digest = hashlib.sha256(data).hexdigest()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Body-Sha256", digest)
        self.send_header("X-Body-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            self.wfile.flush()
            return
        step = 65536
        for off in range(0, n, step):
            piece = data[off:off + step]
            self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    verbose = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    srv = Server((args.host, args.port), Handler)
    srv.verbose = args.verbose
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
