# SPDX-License-Identifier: MIT
"""The nginx module's own connections to the auth server (issue 13, speed).

Validations no longer go through libcurl in nginx: the module talks HTTP/1.1
on nginx's own connections (nginx_module/ngx_http_tokengate_peer.c), kept
alive between validations, with the bytes of common/http1.c.  These tests
drive that transport as an administrator's configuration would: kept
connections, a server that closes one, a name with two addresses, TLS with
each of tokengate.conf's trust settings, and, for every TLS fault, the same
error name as the CLI gives for the same server.
"""
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import Cli, fetch_token, open_black_hole
from nginxlib import status_json, status_site as site, write_tg_conf
from pamlib import make_pki

API = "insight"


def test_validations_share_one_kept_connection(tmp_path, devserver, nginx):
    """Sequential validations of several users' tokens: one TCP connection
    to the auth server, each answer its own."""
    site(nginx, write_tg_conf(tmp_path, API, devserver.url))
    users = ["alice", "bob", "carol"]
    toks = {u: fetch_token(devserver, API, u) for u in users}
    devserver.reset_counters()
    for i in range(30):
        u = users[i % 3]
        r = nginx.get("/p/index.html", toks[u])
        assert r.status == 200, r
        assert r.header("X-TG-Email") == f"{u}@example.com"
    r = nginx.get("/p/index.html", "never-issued-kept-0123456789")
    assert r.status == 401
    c = devserver.counters()
    assert c["validate"] == 31 and c["connections"] == 1, c
    st = status_json(nginx)
    assert st["transfers"] == {"nginx": 31, "libcurl": 0}, st
    assert st["connections"] == 1, st


def test_a_proxy_keeps_libcurl(tmp_path, devserver, nginx):
    """A tokengate.conf naming a proxy: that location's calls go through
    libcurl (the proxy here refuses, so 503), the others' through nginx."""
    from conftest import free_port
    conf = write_tg_conf(tmp_path, API, devserver.url)
    proxied = write_tg_conf(tmp_path, API, devserver.url,
                            proxy=f"http://127.0.0.1:{free_port()}")
    nginx.server(f"""
        location = /status {{ tokengate_status; }}
        tokengate_backoff off;
        location /p/ {{ alias {nginx.html}/; tokengate "api";
                       tokengate_config {conf}; }}
        location /proxied/ {{ alias {nginx.html}/; tokengate "api";
                             tokengate_config {proxied}; }}
""")
    nginx.start()
    tok = fetch_token(devserver, API)
    assert nginx.get("/p/index.html", tok).status == 200
    assert nginx.get("/proxied/index.html", tok).status == 503
    assert "err=TG_UNAVAILABLE" in nginx.logs()
    st = status_json(nginx)
    assert st["transfers"] == {"nginx": 1, "libcurl": 1}, st
    prom = nginx.get("/status?format=prometheus").body.decode()
    assert 'tokengate_transfers_total{transport="libcurl"} 1' in prom
    assert "tokengate_connections_total 1" in prom


class OneShotRelay:
    """A server in front of the devserver that answers the first request
    of each connection (relayed, keep-alive) and closes the connection,
    without a byte, when the second request arrives: what a server whose
    keep-alive timeout fires just as the client reuses the connection
    does."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.connections = 0
        self.dropped = 0
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    @staticmethod
    def read_request(c):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data

    def one(self, c):
        with c:
            req = self.read_request(c)
            if req is None:
                return
            with socket.create_connection(("127.0.0.1", self.target)) as up:
                up.sendall(req)
                resp = b""
                while True:
                    chunk = up.recv(65536)
                    resp += chunk
                    head, _, body = resp.partition(b"\r\n\r\n")
                    if b"\r\n\r\n" in resp:
                        length = [int(line.split(b":")[1]) for line in
                                  head.split(b"\r\n")
                                  if line.lower().startswith(
                                      b"content-length:")]
                        if length and len(body) >= length[0]:
                            break
                    if not chunk:
                        break
            c.sendall(resp)
            if self.read_request(c) is not None:
                self.dropped += 1
            # closed without an answer (or the client closed first)

    def stop(self):
        self.stopped = True
        self.lsock.close()


def test_a_kept_connection_the_server_drops_is_retried(tmp_path, devserver,
                                                       nginx):
    """The server closes a kept connection when the next request arrives,
    before answering: the module sends the request again, once, on a new
    connection, and the client never sees the drop."""
    port = int(devserver.url.rsplit(":", 1)[1])
    relay = OneShotRelay(port)
    try:
        site(nginx, write_tg_conf(tmp_path, API,
                                  f"http://127.0.0.1:{relay.port}"))
        toks = [fetch_token(devserver, API, u) for u in ("alice", "bob")]
        for i in range(6):
            r = nginx.get("/p/index.html", toks[i % 2])
            assert r.status == 200, (i, r, nginx.logs()[-2000:])
        assert relay.dropped >= 1, relay.dropped
        assert relay.connections == 6, relay.connections
        assert "err=TG_" not in nginx.logs()
    finally:
        relay.stop()


def test_a_dropped_fresh_connection_is_not_retried(tmp_path,
                                                   devserver_factory, nginx):
    """A new connection the server closes without answering is an outage
    (503, TG_UNAVAILABLE), asked once: only kept connections are retried."""
    srv = devserver_factory()
    tok = fetch_token(srv, API)
    site(nginx, write_tg_conf(tmp_path, API, srv.url),
         "            tokengate_backoff off;")
    srv.fault(endpoint="validate", close=True, count=1)
    r = nginx.get("/p/index.html", tok)
    assert r.status == 503
    assert "err=TG_UNAVAILABLE" in nginx.logs()
    assert srv.counters()["validate"] == 1
    assert nginx.get("/p/index.html", tok).status == 200


def test_a_name_is_resolved_when_nginx_starts(tmp_path, devserver, nginx):
    """tokengate_url with a host name (localhost: ::1 and 127.0.0.1, the
    devserver on the second only): the addresses are tried in turn."""
    port = devserver.url.rsplit(":", 1)[1]
    site(nginx, write_tg_conf(tmp_path, API, f"http://localhost:{port}"))
    tok = fetch_token(devserver, API)
    for _ in range(3):
        r = nginx.get("/p/index.html", tok)
        assert r.status == 200 and \
            r.header("X-TG-Email") == "alice@example.com", r


def private_names(tmp_path, hosts=""):
    """A command prefix that runs a process in a private mount namespace
    with its own /etc/hosts (the text hosts) and an empty /etc/resolv.conf:
    the resolver then asks 127.0.0.1:53 only, where nothing listens, so no
    name outside hosts resolves and nothing leaves the machine.  None when
    this host cannot do it."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("")
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(hosts)
    mounts = (f"mount --bind {resolv} /etc/resolv.conf && "
              f"mount --bind {hosts_file} /etc/hosts")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mounts],
                           capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", mounts + ' && exec "$0" "$@"']


def test_a_name_that_does_not_resolve_at_load_is_left_to_libcurl(
        tmp_path, nginx):
    """tokengate_url's host does not resolve when nginx starts: nginx -t
    warns and starts, and that location's calls go through libcurl, which
    tries to resolve it for each new connection (here it never does: 503,
    TG_UNAVAILABLE)."""
    prefix = private_names(tmp_path)
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m)")
    # never started outside the namespace: its resolver must not be asked
    site(nginx, write_tg_conf(tmp_path, API,
                              "https://tokengate-test-host.invalid:8443"),
         "            tokengate_backoff off;", start=False)
    res = nginx.test_config(prefix)
    assert res.returncode == 0, res.stderr
    assert "tokengate-test-host.invalid:8443\" cannot be resolved now" \
        in res.stderr, res.stderr
    assert "go through libcurl" in res.stderr
    nginx.start(prefix)
    r = nginx.get("/p/index.html", "some-token-0123456789abcdef")
    assert r.status == 503, r
    assert "err=TG_UNAVAILABLE" in nginx.logs()
    assert "cannot resolve" in nginx.logs()
    assert status_json(nginx)["transfers"] == {"nginx": 0, "libcurl": 1}


def test_an_address_that_never_answers_leaves_time_for_the_next(
        tmp_path, devserver_factory, nginx):
    """A name with two addresses, the first a black hole (SYNs dropped):
    it gets its share of connect_timeout, then the second answers, as
    libcurl tries the addresses of a name."""
    name = "tg-two-addresses.test"
    prefix = private_names(tmp_path, f"127.0.0.2 {name}\n"
                                     f"127.0.0.3 {name}\n")
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m)")
    order = subprocess.run(prefix + ["getent", "ahostsv4", name],
                           capture_output=True, text=True).stdout.split()
    first = order[0]
    second = "127.0.0.3" if first == "127.0.0.2" else "127.0.0.2"
    hole = open_black_hole(first)
    port = hole[0].getsockname()[1]
    try:
        srv = devserver_factory("--listen", f"{second}:{port}")
        tok = fetch_token(srv, API)
        site(nginx, write_tg_conf(tmp_path, API, f"http://{name}:{port}",
                                  allow_insecure_http="yes",
                                  connect_timeout="4", timeout="10"),
             "            tokengate_backoff off;", start=False)
        nginx.start(prefix)
        # had the black hole taken all of connect_timeout, this would be
        # 503 (TG_TIMEOUT)
        r = nginx.get("/p/index.html", tok)
        assert r.status == 200, (r, nginx.logs()[-2000:])
        assert srv.counters()["validate"] == 1
    finally:
        for f in hole:
            f.close()


def test_kept_connections_do_not_hold_a_quitting_worker(tmp_path,
                                                        devserver, nginx):
    """nginx -s quit with kept connections to the auth server: the worker
    closes them and exits (nginx_factory's stop waits for it, then checks
    the log)."""
    site(nginx, write_tg_conf(tmp_path, API, devserver.url))
    tok = fetch_token(devserver, API)
    assert nginx.get("/p/index.html", tok).status == 200
    nginx.stop()


# ------------------------------------------------------------------ TLS

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = make_pki(tmp_path_factory.mktemp("pki"),
                 [("wrongname", "DNS:other.example"),
                  ("localhost", "DNS:localhost")], self_signed=True)
    subprocess.run(["openssl", "x509", "-in", "good.pem", "-pubkey",
                    "-noout", "-out", "good.pub"], cwd=d, check=True,
                   capture_output=True)
    (d / "capath").mkdir()
    (d / "capath" / "ca.pem").write_bytes((d / "ca.pem").read_bytes())
    subprocess.run(["openssl", "rehash", str(d / "capath")], check=True,
                   capture_output=True)
    return d


def spki_pin(pub):
    import base64
    import hashlib
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub),
                          "-outform", "der"], check=True,
                         capture_output=True).stdout
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def wrong_pin():
    import base64
    return "sha256//" + base64.b64encode(b"\1" * 32).decode()


# row: certificate, tokengate.conf keys (callable of the pki dir), host,
#      expected error name (None: 200)
TLS = {
    "trusted-ca-file": ("good", lambda d: {"ca_file": d / "ca.pem"},
                        "127.0.0.1", None),
    "trusted-ca-path": ("good", lambda d: {"ca_path": d / "capath"},
                        "127.0.0.1", None),
    "server-name": ("localhost", lambda d: {"ca_file": d / "ca.pem"},
                    "localhost", None),
    "pin-hash": ("good", lambda d: {"ca_file": d / "ca.pem",
                                    "pinned_pubkey":
                                    spki_pin(d / "good.pub")},
                 "127.0.0.1", None),
    "pin-file": ("good", lambda d: {"ca_file": d / "ca.pem",
                                    "pinned_pubkey": d / "good.pub"},
                 "127.0.0.1", None),
    "untrusted": ("good", lambda d: {}, "127.0.0.1", "TG_TLS"),
    "wrong-name": ("wrongname", lambda d: {"ca_file": d / "ca.pem"},
                   "127.0.0.1", "TG_TLS"),
    "self-signed": ("self", lambda d: {"ca_file": d / "ca.pem"},
                    "127.0.0.1", "TG_TLS"),
    "pin-mismatch": ("good", lambda d: {"ca_file": d / "ca.pem",
                                        "pinned_pubkey": wrong_pin()},
                     "127.0.0.1", "TG_TLS"),
    "plain-http-port": (None, lambda d: {"ca_file": d / "ca.pem"},
                        "127.0.0.1", "TG_TLS"),
}


@pytest.mark.parametrize("row", sorted(TLS))
def test_tls_trust_and_faults_as_the_cli(row, tmp_path, devserver_factory,
                                         nginx, pki, monkeypatch):
    """Each TLS setting and fault: nginx answers 200, or 503 with the same
    err= name the CLI gives for the same server and tokengate.conf; after a
    refusal nothing was asked of the server."""
    cert, keys, host, err = TLS[row]
    if cert is None:
        srv = devserver_factory()
        tok = fetch_token(srv, API)
        url = srv.url.replace("http://", "https://")
    else:
        srv = devserver_factory("--tls-cert", pki / f"{cert}.pem",
                                "--tls-key", pki / f"{cert}.key")
        with monkeypatch.context() as m:      # urllib in fetch_token only
            m.setattr(ssl, "_create_default_https_context",
                      ssl._create_unverified_context)
            tok = fetch_token(srv, API)
        url = srv.url.replace("127.0.0.1", host)
    extra = keys(pki)
    conf = write_tg_conf(tmp_path, API, url, **extra)
    site(nginx, conf, "            tokengate_backoff off;")
    srv.reset_counters()
    for _ in range(2):
        r = nginx.get("/p/index.html", tok)
        if err is None:
            assert r.status == 200, (r, nginx.logs()[-2000:])
            assert r.header("X-TG-Email") == "alice@example.com"
        else:
            assert r.status == 503, r
    logs = nginx.logs()
    c = srv.counters()
    if err is None:
        assert "err=TG_" not in logs, logs[-2000:]
        assert c["validate"] == 2 and c["connections"] == 1, c
        assert status_json(nginx)["transfers"]["libcurl"] == 0
        return
    assert f"err={err}" in logs, logs[-2000:]
    assert c["validate"] == 0, c

    cli = Cli(tmp_path, url, API)
    cli.write_config(url=url, api=API, **extra)
    cli.tokens.add(tok)
    res = cli("whoami", env={"TOKENGATE_TOKEN": tok}, timeout=30)
    assert f"err={err}" in res.err, res.err


class TlsEnding:
    """A TLS server (the pki's good certificate) in front of a plain
    devserver: it relays the first request (later clients get the same
    answer), sends the answer without its
    Content-Length (so the body ends with the connection) and ends the
    connection cleanly (close_notify) or not (a bare close), or sends
    nothing at all before closing."""

    def __init__(self, pki, target_port, mode):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki / "good.pem", pki / "good.key")
        self.target = target_port
        self.mode = mode
        self.resp = None
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, raw):
        try:
            c = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        req = OneShotRelay.read_request(c)
        if req is None or self.mode == "nothing":
            c.close()                     # no close_notify
            return
        try:
            resp = self.answer(req)
        except OSError:
            c.close()
            raise
        head, _, body = resp.partition(b"\r\n\r\n")
        lines = [h for h in head.split(b"\r\n")
                 if not h.lower().startswith((b"content-length:",
                                              b"connection:"))]
        c.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n"
                  + body)
        if self.mode == "clean":
            try:
                c.unwrap().close()        # close_notify, then close
            except (OSError, ssl.SSLError):
                c.close()
        else:
            c.close()                     # no close_notify

    def answer(self, req):
        """The devserver's answer to the first request, for every client
        (nginx, then the CLI, with the same token): asked once."""
        with self.lock:
            if self.resp is None:
                with socket.create_connection(("127.0.0.1", self.target),
                                              timeout=10) as up:
                    up.sendall(req.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
                    resp = b""
                    while True:
                        chunk = up.recv(65536)
                        if not chunk:
                            break
                        resp += chunk
                self.resp = resp
            return self.resp

    def stop(self):
        self.lsock.close()


# mode: (nginx's answer, error name for nginx and the CLI, or None)
ENDINGS = {
    "clean": (200, None),
    "unclean": (200, None),
    "nothing": (503, "TG_UNAVAILABLE"),
}


@pytest.mark.parametrize("mode", sorted(ENDINGS))
def test_tls_connection_endings_as_the_cli(mode, tmp_path, devserver, nginx,
                                           pki):
    """An answer whose body ends with its TLS connection, with close_notify
    or without (F13, unclean TLS shutdown), and a TLS connection closed
    before any answer: nginx decides as the CLI does (libcurl) for the same
    server.  libcurl takes an end without close_notify for the end of the
    body (a JSON body cut short would not parse), so nginx does too."""
    want, err = ENDINGS[mode]
    port = int(devserver.url.rsplit(":", 1)[1])
    tls = TlsEnding(pki, port, mode)
    try:
        tok = fetch_token(devserver, API)
        url = f"https://127.0.0.1:{tls.port}"
        conf = write_tg_conf(tmp_path, API, url, ca_file=pki / "ca.pem")
        site(nginx, conf, "            tokengate_backoff off;")
        r = nginx.get("/p/index.html", tok)
        assert r.status == want, (r, nginx.logs()[-2000:])
        cli = Cli(tmp_path, url, API)
        cli.write_config(url=url, api=API, ca_file=pki / "ca.pem")
        cli.tokens.add(tok)
        res = cli("whoami", env={"TOKENGATE_TOKEN": tok}, timeout=30)
        if err is None:
            assert r.header("X-TG-Email") == "alice@example.com"
            assert "err=TG_" not in nginx.logs()
            assert res.rc == 0 and "alice@example.com" in res.out, res
            return
        assert f"err={err}" in nginx.logs(), nginx.logs()[-2000:]
        assert f"err={err}" in res.err, res.err
    finally:
        tls.stop()


def test_chunk_framing_cannot_stretch_an_answer(tmp_path, nginx):
    """A server that wraps a tiny body in endless chunk framing (one byte
    per chunk, 4 KB of extension each) is cut off once the answer's bytes
    pass twice max_response_bytes and the head: 503, TG_PROTOCOL, and the
    worker keeps serving."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    sent = []

    def serve():
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        with c:
            OneShotRelay.read_request(c)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            frame = b"1;" + b"x" * 4000 + b"\r\n \r\n"
            total = 0
            try:
                while total < 8 << 20:
                    c.sendall(frame)
                    total += len(frame)
            except OSError:
                pass
            sent.append(total)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        site(nginx, write_tg_conf(tmp_path, API, f"http://127.0.0.1:{port}",
                                  max_response_bytes="65536"),
             "            tokengate_backoff off;")
        r = nginx.get("/p/index.html", "some-token-0123456789abcdef")
        assert r.status == 503, r
        assert "err=TG_PROTOCOL" in nginx.logs()
        assert "larger than max_response_bytes" in nginx.logs()
        t.join(timeout=30)
        assert sent and sent[0] < 8 << 20, sent
        assert nginx.get("/index.html").status in (200, 404)
    finally:
        lsock.close()
