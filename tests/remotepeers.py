"""tests/remotepeers.py — servers for the remote-model tests, started and
stopped by the tests themselves on 127.0.0.1 (nothing outside is used).

    with Nginx(root_dir) as web:        # real range support, access log
        url = web.url("model.safetensors")
        ... web.log() -> [{"uri", "status", "sent", "body", "range"}, ...]

    with FaultServer(root_dir, plan) as f:   # a small misbehaving server
        ...

Every wait is bounded; every server is stopped on the way out.
"""
import http.server
import os
import re
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Nginx:
    """nginx serving `root` on a free port of 127.0.0.1."""

    def __init__(self, root, tls=False):
        self.root = os.path.abspath(root)
        self.dir = tempfile.mkdtemp(prefix="nginx.")
        self.port = free_port()
        self.proc = None
        self.access = os.path.join(self.dir, "access.log")
        self.tls = tls
        # a self-signed certificate for 127.0.0.1, made here (openssl)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")

    def url(self, name=""):
        return "%s://127.0.0.1:%d/%s" % ("https" if self.tls else "http", self.port, name)

    def _make_cert(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True, timeout=60)

    def __enter__(self):
        if self.tls:
            self._make_cert()
        tls = ("ssl; ssl_certificate %s; ssl_certificate_key %s" % (self.cert, self.key)
               if self.tls else "")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
daemon off;
master_process off;
worker_processes 1;
%s
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    log_format ranges '$request_method $request_uri $status $bytes_sent $body_bytes_sent "$http_range"';
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    server {
        listen 127.0.0.1:%d %s;
        root %s;
        access_log %s ranges;
        location / { }
        location /forbidden/ { return 403; }
    }
}
""" % ("user root;" if os.getuid() == 0 else "", self.dir, self.dir, self.dir, self.dir,
       self.dir, self.dir, self.dir, self.port, tls, self.root, self.access))
        self.proc = subprocess.Popen([NGINX, "-c", conf, "-p", self.dir, "-e",
                                      os.path.join(self.dir, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("nginx did not start")
        return self

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *a):
        self.stop()

    def log(self):
        """Requests so far: dicts with method, uri, status, sent, body, range."""
        out = []
        try:
            with open(self.access) as f:
                for line in f:
                    m = re.match(r'(\S+) (\S+) (\d+) (\d+) (\d+) "(.*)"', line)
                    if m:
                        out.append({"method": m.group(1), "uri": m.group(2),
                                    "status": int(m.group(3)), "sent": int(m.group(4)),
                                    "body": int(m.group(5)), "range": m.group(6)})
        except FileNotFoundError:
            pass
        return out

    def clear_log(self):
        open(self.access, "w").close()

    def body_bytes(self):
        return sum(r["body"] for r in self.log())


class _Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass    # a client that hangs up on purpose (the tests do) is no news


class FaultServer:
    """A range-capable server over `root` whose misbehaviour is set by
    `fault` (changeable while running):
      None            behave
      "stall"         send the headers, then nothing
      "drop"          send half the body of each range, then close (once per range)
      "500x2"         500 twice for each range, then the bytes
      "norange"       ignore Range: 200 with the whole file
      "403"           403 for everything
    and `etag` the ETag it sends (change it to simulate a new object)."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.fault = None
        self.etag = '"v1"'
        self.port = free_port()
        self.counts = {}
        self.requests = []
        self.lock = threading.Lock()
        self.srv = None

    def url(self, name=""):
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def __enter__(self):
        peer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = os.path.join(peer.root, self.path.lstrip("/"))
                rng = self.headers.get("Range", "")
                with peer.lock:
                    peer.requests.append((self.path, rng))
                    key = (self.path, rng)
                    n = peer.counts.get(key, 0)
                    peer.counts[key] = n + 1
                fault = peer.fault
                if fault == "403":
                    return self._send(403, b"forbidden")
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    return self._send(404, b"not found")
                im = self.headers.get("If-Match")
                if im and im != peer.etag:
                    return self._send(412, b"precondition failed")
                inm = self.headers.get("If-None-Match")
                if inm and inm == peer.etag:
                    return self._send(304, b"")
                m = re.match(r"bytes=(\d+)-(\d+)$", rng)
                if fault == "norange" or not m:
                    return self._send(200, data)
                a, b = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
                if a >= len(data):
                    return self._send(416, b"")
                if fault == "500x2" and n < 2:
                    return self._send(500, b"oops")
                body = data[a:b + 1]
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, len(data)))
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", peer.etag)
                self.end_headers()
                if fault == "stall":
                    time.sleep(30)
                    return
                if fault == "drop" and n < 1 and len(body) > 1:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", peer.etag)
                self.end_headers()
                if body:
                    self.wfile.write(body)

        self.srv = _Threaded(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        if not wait_port(self.port):
            raise RuntimeError("fault server did not start")
        return self

    def __exit__(self, *a):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None


S3RVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "node_modules",
                      "s3rver", "bin", "s3rver.js")


class S3:
    """s3rver (npm) behind a front that checks each request's AWS SigV4
    signature (s3rver itself does not verify V4) and proxies it.  Objects
    are put straight to s3rver.  `rejected` counts bad signatures, `ok`
    good ones; `body_bytes` what the front sent back."""

    def __init__(self, bucket="models", key="AKIDMODELFSTEST", secret="modelfs-secret/key",
                 region="eu-west-3", token=None):
        self.bucket, self.key, self.secret, self.region, self.token = \
            bucket, key, secret, region, token
        self.dir = tempfile.mkdtemp(prefix="s3rver.")
        self.back_port = free_port()
        self.port = free_port()
        self.proc = None
        self.srv = None
        self.rejected = 0
        self.signed_ok = 0
        self.body_bytes = 0
        self.lock = threading.Lock()

    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def env(self):
        e = dict(os.environ, AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                 AWS_REGION=self.region)
        if self.token:
            e["AWS_SESSION_TOKEN"] = self.token
        return e

    def put(self, key, path):
        import http.client
        with open(path, "rb") as f:
            data = f.read()
        c = http.client.HTTPConnection("127.0.0.1", self.back_port, timeout=30)
        c.request("PUT", "/%s/%s" % (self.bucket, key), body=data)
        r = c.getresponse()
        r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError("s3rver PUT %s: %d" % (key, r.status))

    def verify(self, method, path, headers):
        """Recompute the SigV4 signature of a request; True when it matches."""
        import hashlib
        import hmac
        auth = headers.get("Authorization", "")
        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request,"
                     r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$", auth)
        if not m or m.group(1) != self.key or m.group(3) != self.region:
            return False
        date, signed, sig = m.group(2), m.group(4).split(";"), m.group(5)
        if "host" not in signed or "x-amz-date" not in signed:
            return False
        if self.token and ("x-amz-security-token" not in signed or
                           headers.get("x-amz-security-token") != self.token):
            return False
        amzdate = headers.get("x-amz-date", "")
        payload = headers.get("x-amz-content-sha256") or hashlib.sha256(b"").hexdigest()
        canon_headers = "".join("%s:%s\n" % (h, " ".join((headers.get(h) or "").split()))
                                for h in signed)
        creq = "\n".join([method, path.split("?")[0], "", canon_headers, ";".join(signed),
                          payload])
        scope = "%s/%s/s3/aws4_request" % (date, self.region)
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])

        def h(k, msg):
            return hmac.new(k, msg.encode(), hashlib.sha256).digest()
        k = h(h(h(h(("AWS4" + self.secret).encode(), date), self.region), "s3"),
              "aws4_request")
        return hmac.compare_digest(hmac.new(k, sts.encode(), hashlib.sha256).hexdigest(), sig)

    def __enter__(self):
        self.proc = subprocess.Popen(["node", S3RVER, "-d", self.dir, "-a", "127.0.0.1",
                                      "-p", str(self.back_port), "-s",
                                      "--configure-bucket", self.bucket],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.back_port, 30):
            self.__exit__()
            raise RuntimeError("s3rver did not start")
        peer = self
        import http.client

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if not peer.verify("GET", self.path, self.headers):
                    with peer.lock:
                        peer.rejected += 1
                    body = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                with peer.lock:
                    peer.signed_ok += 1
                c = http.client.HTTPConnection("127.0.0.1", peer.back_port, timeout=30)
                fwd = {k: v for k, v in self.headers.items()
                       if k.lower() in ("range", "if-match", "if-none-match",
                                        "if-modified-since", "if-unmodified-since")}
                c.request("GET", self.path, headers=fwd)
                r = c.getresponse()
                body = r.read()
                c.close()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() in ("etag", "last-modified", "content-range", "content-type"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)
                with peer.lock:
                    peer.body_bytes += len(body)

        self.srv = _Threaded(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        if not wait_port(self.port):
            self.__exit__()
            raise RuntimeError("S3 front did not start")
        return self

    def __exit__(self, *a):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
