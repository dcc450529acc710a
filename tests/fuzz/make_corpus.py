#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of the libFuzzer targets (tests/fuzz/corpus/<target>/).

Parser seeds follow the input format of fuzz_parsers.c:
  byte 0: status index (high nibble, into tg_statuses) | variant (low nibble)
  byte 1: Retry-After nibble (high, seconds = n * 100 - 100) | content type
          index (low 3 bits, into tg_content_types)
  rest:   the body
JSON seeds (fuzz_json) are byte 0 (bit 0: JSON_DECODE_ANY) and the text.
Config seeds are plain config text.  Embed seeds follow fuzz_embed's format:
  byte 0: flags (1 http, 2 force_logout_login, 4 first_name, 8 last_name,
          16 user_timezone, 32 external_group_id, 64 fixed nonce,
          128 no permissions)
  byte 1: session length (n * 11000 - 100000 s); byte 2: time (0: now)
  rest:   NUL-separated fields: host, embed_path, external_user_id,
          first_name, last_name, user_timezone, external_group_id, nonce,
          permissions, models, group_ids, user_attributes (key=value),
          the lists split at 0x1e
HTTP/1.1 seeds follow fuzz_http1's format:
  byte 0: where the bytes are split in two reads (n * length / 255)
  byte 1: flags (bits 0-1: max_response_bytes 16, 256, 4096, 65536;
          4 parse Date; 8 the server closes after the bytes)
  rest:   what the server sends
Run from anywhere:
  python3 tests/fuzz/make_corpus.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# Indexes into fuzz_parsers.c's tables.
STATUS = {200: 0, 204: 3, 401: 4, 404: 5, 422: 6, 429: 7, 500: 8, 503: 9,
          302: 10, 400: 11, 403: 12, 201: 13, 100: 14}
CT = {"json": 0, "text": 1, "json-utf8": 2, None: 3, "html": 4}
NO_RETRY = 0  # nibble 0 -> -100 s, that is "absent"


def seed(status, variant, ct, body, retry_nibble=NO_RETRY):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body, separators=(",", ":"))
    if isinstance(body, str):
        body = body.encode()
    return bytes([(STATUS[status] << 4) | variant,
                  (retry_nibble << 4) | CT[ct]]) + body


LOOKER_401 = {"message": "Requires authentication.",
              "documentation_url": "https://docs.looker.com/"}
LOOKER_422 = {"message": "Validation Failed", "errors": [
    {"field": "workspace_id", "code": "invalid",
     "message": "Must be dev or production", "documentation_url": None}],
    "documentation_url": None}
INSIGHT_USER = {"uid": "8cf6406a-6e43-402b-95eb-c0a47f8791cc",
                "mail": "alice@example.com", "cn": "Alice Smith",
                "access_token_expiration_time": "2026-11-26T10:15:00Z"}
PROFILE = {"objectType": "USER_PROFILE",
           "id": "8cf6406a-6e43-402b-95eb-c0a47f8791cc",
           "firstName": "William", "lastName": "Gates",
           "displayName": "William Gates", "email": "wg@example.com",
           "authorities": ["APP_ALL", "SYS_USER"],
           "authorityGroups": ["analysts"], "evaluationUser": False,
           "url": "/insightservices/rest/v1/auth/currentuser"}
LOOKER_USER = {"id": 42, "first_name": "Lara", "last_name": "Croft",
               "display_name": "Lara Croft", "email": "lara@example.com",
               "is_disabled": False, "group_ids": [1, "2"],
               "role_ids": [7], "locale": "en"}

SEEDS = {
    "token": {
        # variant bit 0: looker; bit 1: sudo (looker)
        "insight_raw": seed(200, 0, "text", "eyJ0eXAi.RAW-token_value~+/==\r\n"),
        "insight_json_string": seed(200, 0, "json", '"abc.def-123"'),
        "insight_object": seed(200, 0, "json", {"access_token": "obj-token-1"}),
        "looker_login": seed(200, 1, "json", {"access_token": "lk-access-token-1",
                                              "token_type": "Bearer",
                                              "expires_in": 3599}),
        "looker_sudo": seed(200, 3, "json-utf8", {"access_token": "sudo-42",
                                                  "token_type": "bearer",
                                                  "expires_in": 3600}),
        "looker_404": seed(404, 1, "json", {"message": "Not found",
                                            "documentation_url": None}),
        "insight_401_text": seed(401, 0, "text", "Unauthorized"),
        "rate_limited": seed(429, 1, "json", {"message": "Too Many Requests"}, 3),
    },
    "validate": {
        # variant bit 0: looker; bit 1: currentuser (insight)
        "insight_user": seed(200, 0, "json", INSIGHT_USER),
        "insight_user_epoch_ms": seed(200, 0, "json", dict(
            INSIGHT_USER, access_token_expiration_time=1795688100000)),
        "insight_currentuser": seed(200, 2, "json", PROFILE),
        "looker_user": seed(200, 1, "json", LOOKER_USER),
        "looker_401": seed(401, 1, "json", LOOKER_401),
        "duplicate_uid": seed(200, 0, "json", '{"uid":"alice","uid":"root"}'),
        "html_500": seed(500, 0, "html", "<html><body>Bad Gateway</body></html>"),
    },
    "profile": {
        "insight_profile": seed(200, 0, "json", PROFILE),
        "insight_evaluation": seed(200, 0, "json-utf8",
                                   dict(PROFILE, evaluationUser=True,
                                        displayName="Jos\u00e9 M\u00fcller")),
        "looker_user": seed(200, 1, "json", LOOKER_USER),
        "fico_v2_403": seed(403, 0, "json", {"error": {
            "code": "FORBIDDEN", "message": "Access is denied",
            "traceId": "0af7651916cd43dd8448eb211c80319c"}}),
        "redirect": seed(302, 0, None, ""),
    },
    "credentials": {
        # variant bits 0-1: show, new, revoke; bit 2: looker; bit 3: out NULL
        "show": seed(200, 0, "json", {"createdDate": 1700000000123,
                                      "credentialsId": 3}),
        "show_none": seed(404, 0, "json", ""),
        "new": seed(200, 1, "json", {"clientId": "c-1234567",
                                     "secret": "NewSecretValue-1",
                                     "createdDate": 1700000000999,
                                     "credentialsId": 4}),
        "revoke": seed(204, 2, None, ""),
        "revoke_out_null": seed(204, 10, None, ""),
        "unavailable": seed(503, 1, "text", "down for maintenance", 2),
    },
    "session": {
        # variant bit 0: logout; bit 1: insight (refused)
        "session": seed(200, 0, "json", {"can": {"view": True},
                                         "workspace_id": "dev",
                                         "sudo_user_id": None}),
        "session_sudo": seed(200, 0, "json", {"can": {}, "workspace_id":
                                              "production",
                                              "sudo_user_id": 17}),
        "session_422": seed(422, 0, "json", LOOKER_422),
        "logout": seed(204, 1, None, ""),
        "logout_200": seed(200, 1, "json", '"Logged out"'),
    },
    "config": {
        "insight.conf": (
            "# FICO Xpress Insight\n"
            "api = insight\n"
            "url = https://insight.example.com\n"
            "insight_base_path = /insightservices/rest/v1\n"
            "insight_validate = auto\n"
            "timeout = 10\n"
            "connect_timeout = 2.5\n"
            "token_max_age = 900\n"
            "require_groups = APP_ALL analysts\n"
            "require_groups_mode = any\n"
            "deny_evaluation = yes\n"
            "user_attribute = email_local\n"),
        "looker.conf": (
            "api = looker\n"
            "url = https://looker.example.com:19999\n"
            "looker_api_version = 4.0\n"
            "looker_auth_scheme = bearer\n"
            "max_response_bytes = 65536\n"
            "retry_after_max = 60\n"
            "deny_disabled = yes\n"
            "user_attribute = id\n"
            "client_id = lk-client-1\n"
            "client_secret_file = /etc/tokengate/secret\n"),
        "loopback.conf": (
            "url = http://127.0.0.1:8080/\n"
            "allow_insecure_http = yes\n"
            "ca_file = /etc/ssl/certs/ca-certificates.crt\n"
            "pinned_pubkey = sha256//YhKJKSzoTt2b5FP18fvpHo7fJYqQCjAa3HWY3tvRMwE=\n"
            "case_insensitive = no\n"
            "user_map_file = /etc/tokengate/users.map\n"),
        "bad_key.conf": "url = https://x.example.com\nno_such_key = 1\n",
        "crlf_comments.conf": "# comment\r\n\r\n  api=looker  \r\nurl=https://l.example.com\r\n",
    },
}


def json_seed(text, any_value=False):
    if not isinstance(text, (bytes, str)):
        text = json.dumps(text, separators=(",", ":"), ensure_ascii=False)
    if isinstance(text, str):
        text = text.encode()
    return bytes([1 if any_value else 0]) + text


SEEDS["json"] = {
    "insight_user": json_seed(INSIGHT_USER),
    "looker_user": json_seed(LOOKER_USER),
    "profile": json_seed(PROFILE),
    "looker_422": json_seed(LOOKER_422),
    "spaced": json_seed('{ "a" : [ 1 , 2.5e-3 , -0 , true , false , null ] ,\r\n'
                        '\t"b" : { } }\n'),
    "escapes": json_seed('["\\"\\\\\\/\\b\\f\\n\\r\\t",'
                         '"\\u00e9\\u20ac\\ud83d\\ude00"]'),
    "utf8": json_seed('{"k\u00e9y":"Jos\u00e9 \u20ac \U0001f600"}'),
    "numbers": json_seed("[0,-0,9223372036854775807,-9223372036854775808,"
                         "1e308,1e-400,0.1,12345678901234567890.5]"),
    "string_any": json_seed('"abc.def-123"', True),
    "number_any": json_seed("-12.5E+3", True),
    "nested": json_seed("[" * 33 + "]" * 33),
    "duplicate": json_seed('{"uid":"alice","uid":"root"}'),
    "nul_after_number": json_seed(b"[1\0]"),
}


def embed_seed(flags, session_byte, time_byte, *fields):
    return bytes([flags, session_byte, time_byte]) + b"\0".join(
        f.encode() if isinstance(f, str) else f for f in fields)


LIST = "\x1e".join
VECTOR1 = ["looker.example.com", "/embed/dashboards/42", "user-57", "Alice",
           "Jones", "", "acme", "0123456789abcdef0123456789abcdef",
           LIST(["access_data", "see_looks", "see_user_dashboards"]),
           "thelook", LIST(["4", "3"]), "vendor_id=17"]

SEEDS_EMBED = {
    "vector1": embed_seed(2 | 4 | 8 | 32 | 64, 10, 1, *VECTOR1),
    "fresh_nonce_now": embed_seed(2 | 4 | 8, 10, 0, *VECTOR1),
    "devserver_http": embed_seed(
        1 | 2, 10, 0, "127.0.0.1:8080",
        "/embed/looks/4?embed_domain=https://app.example.com&sdk=2",
        "user-57", "", "", "", "", "", "access_data", "thelook", "", ""),
    "utf8_and_specials": embed_seed(
        2 | 4 | 8 | 16, 9 + 1, 3, "looker.example.com:9999",
        "/embed/dashboards/model::dash", "a&b+c d", "Zo\u00eb",
        "M\u00fcller-\u0141ukasz", "US/Pacific", "", "",
        LIST(["access_data", "see_looks"]), "the look&co", "",
        LIST(["locale=fr_FR", 'company=A&B "Q" \\ / \u00fc=1'])),
    "groups_only": embed_seed(2 | 32 | 128, 250, 2, "[::1]:8443",
                              "/embed/explore/m/e", "u", "", "", "", "", "",
                              "", "", "17", ""),
    "bad_scheme_in_host": embed_seed(2, 10, 1, "https://looker.example.com",
                                     "/embed/dashboards/1", "u", "", "", "",
                                     "", "", "access_data", "m", "", ""),
    "bad_permission": embed_seed(2, 10, 1, "looker.example.com",
                                 "/embed/dashboards/1", "u", "", "", "", "",
                                 "", "admin", "m", "", ""),
}
SEEDS["embed"] = SEEDS_EMBED


def http1_seed(split, flags, raw):
    return bytes([split, flags]) + raw.encode()


H1_VALIDATE = ("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
               "Content-Type: application/json\r\nConnection: keep-alive\r\n"
               "Content-Length: 28\r\n\r\n"
               '{"uid":"alice","cn":"Alice"}')
SEEDS["http1"] = {
    "validate": http1_seed(128, 3 | 4, H1_VALIDATE),
    "chunked": http1_seed(90, 3, "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                          "chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia"
                          "\r\n0\r\nX-T: 1\r\n\r\n"),
    "continue": http1_seed(20, 2, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 "
                           "103 Early Hints\r\nLink: </a>\r\n\r\n"
                           "HTTP/1.1 204 No Content\r\n\r\n"),
    "close_delimited": http1_seed(200, 1 | 8, "HTTP/1.0 200 OK\r\n"
                                  "Content-Type: text/plain\r\n\r\nabc"),
    "rate_limited": http1_seed(60, 2, "HTTP/1.1 429 Too Many Requests\r\n"
                               "Retry-After: 7\r\nContent-Length: 0\r\n\r\n"),
    "truncated": http1_seed(100, 3 | 8, "HTTP/1.1 200 OK\r\nContent-Length: "
                            "100\r\n\r\n{\"uid\""),
    "bare_lf": http1_seed(5, 0, "HTTP/1.1 503\nConnection: close\n"
                          "Content-Length: 2\n\n{}"),
}


def main():
    for target, seeds in SEEDS.items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            if isinstance(data, str):
                data = data.encode()
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
