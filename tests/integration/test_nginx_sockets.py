# SPDX-License-Identifier: MIT
"""The nginx module owns the lifetime of the sockets libcurl uses (issue
12, item 5).

Reproduced before the fix: the auth server's listener has a full backlog,
so libcurl's connect hangs; a client that leaves after 0.3 s cancels its
validation, libcurl (7.88) closes the connecting socket and only then asks
to stop watching it, and nginx logged
"[alert] epoll_ctl(2, N) failed (9: Bad file descriptor)" for every try: a
client could flood the error log at alert level.  Now the module opens and
closes those sockets itself (CURLOPT_OPENSOCKETFUNCTION and
CURLOPT_CLOSESOCKETFUNCTION), and closes one only after its events are
gone, as ngx_close_connection() does.
"""
import socket
import time

from nginxlib import protected, write_tg_conf

CLIENTS = 5


def leave_after(nginx, token, seconds):
    s = socket.create_connection(("127.0.0.1", nginx.port))
    s.sendall(f"GET /p/index.html HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {token}\r\n\r\n".encode())
    time.sleep(seconds)
    s.close()


def test_client_leaving_during_connect_logs_no_alert(tmp_path, black_hole,
                                                     nginx_factory):
    nginx = nginx_factory()
    protected(nginx, write_tg_conf(tmp_path, "insight",
                                   f"http://127.0.0.1:{black_hole}",
                                   connect_timeout=10, timeout=20))
    for i in range(CLIENTS):
        token = f"never-validated-{i}-0123456789abcdef"
        nginx.tokens.add(token)
        leave_after(nginx, token, 0.3)
    deadline = time.monotonic() + 10
    while (nginx.logs().count("validation cancelled") < CLIENTS
           and time.monotonic() < deadline):
        time.sleep(0.05)
    log = nginx.logs()
    assert log.count("validation cancelled") == CLIENTS, log[-3000:]
    assert "[alert]" not in log, log[-3000:]
    # The worker goes on serving, and its connections are all given back.
    assert nginx.get("/open.html").status == 200
    nginx.stop()
    assert "[alert]" not in nginx.logs()
