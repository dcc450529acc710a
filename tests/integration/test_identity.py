# SPDX-License-Identifier: MIT
"""One token, one identity (issue 12, item 3).

Insight validates a token with auth/user (login name cn, expiry) where no
rule needs the profile, and with auth/currentuser (display name, groups,
no login name, no expiry) where one does.  The same token must still be
the same user everywhere: the real nginx module gives identical
$tokengate_user, $tokengate_user_id and $tokengate_email at a location
with group rules and at one without, and the real CLI's whoami prints the
same name and expiry with and without rules.  Looker (one call) is run
through the same checks.  The PAM side (a cn binding with and without
rules) is in test_pam.py.
"""
from conftest import Cli, fetch_token
from nginxlib import ADMIN_GROUP, IDENTITY_HEADERS, write_tg_conf

# What each location shows, as response headers.
SHOWN = ("X-TG-User", "X-TG-Id", "X-TG-Email", "X-Remote-User")


def test_nginx_variables_do_not_depend_on_the_validation_call(
        tmp_path, devserver, nginx, api):
    """/plain/ has no rule (insight auth/user), /groups/ a group rule and
    /flags/ a rule of the config file (both insight auth/currentuser): one
    token gives the same user, id and email at all three, for every demo
    user the rules let through."""
    plain = write_tg_conf(tmp_path, api, devserver.url)
    flags = write_tg_conf(tmp_path, api, devserver.url,
                          deny_evaluation="yes")
    nginx.server(f"""
        location /plain/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_config {plain};
{IDENTITY_HEADERS}
        }}
        location /groups/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_config {plain};
            tokengate_require_group {ADMIN_GROUP[api]};
{IDENTITY_HEADERS}
        }}
        location /flags/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_config {flags};
{IDENTITY_HEADERS}
        }}
""")
    nginx.start()
    tok = fetch_token(devserver, api)

    devserver.reset_counters()
    seen = {}
    for loc in ("plain", "groups", "flags"):
        r = nginx.get(f"/{loc}/index.html", tok)
        assert r.status == 200, (loc, r)
        seen[loc] = {h: r.header(h) for h in SHOWN}
    counters = devserver.counters()
    if api == "insight":
        # both kinds of call were really made: auth/user for /plain/,
        # auth/currentuser for the two locations with rules
        assert counters["validate"] == 1, counters
        assert counters["profile"] == 2, counters

    assert seen["plain"] == seen["groups"] == seen["flags"], seen
    shown = seen["plain"]
    assert shown["X-TG-Email"] == "alice@example.com"
    assert shown["X-Remote-User"] == shown["X-TG-User"]
    if api == "insight":
        # the one human-readable attribute both insight calls carry
        assert shown["X-TG-User"] == "alice@example.com"
        assert shown["X-TG-Id"] == "8cf6406a-6e43-402b-95eb-c0a47f8791cc"
    else:
        assert shown["X-TG-User"] == "Alice Smith"
        assert shown["X-TG-Id"] == "1"

    # another user, through the locations that let her in
    tok = fetch_token(devserver, api, "bob")
    users = {nginx.get(f"/{loc}/index.html", tok).header("X-TG-User")
             for loc in ("plain", "flags")}
    assert len(users) == 1 and None not in users, users


def whoami(cli, *opts):
    res = cli(*opts, "--json", "whoami")
    assert res.rc == 0, res
    text = cli(*opts, "whoami")
    assert text.rc == 0, text
    lines = {line.split(":", 1)[0]: line for line in text.out.splitlines()
             if line.split(":", 1)[0] in ("name", "expires")}
    return res.json(), lines


def test_whoami_name_and_expiry_do_not_depend_on_rules(tmp_path, devserver,
                                                       api):
    """The same stored token, whoami without rules and with a group rule or
    deny_evaluation: the same name and the same expiry (the server's), in
    the JSON and in the text."""
    cli = Cli(tmp_path, devserver.url, api)
    assert cli.login("alice").rc == 0
    plain, plain_text = whoami(cli)
    for rule in (f"require_groups={ADMIN_GROUP[api]}", "deny_evaluation=yes"):
        ruled, ruled_text = whoami(cli, "-o", rule)
        for key in ("id", "name", "email", "expires_at", "expires"):
            assert ruled[key] == plain[key], (rule, key, plain, ruled)
        assert ruled_text["name"] == plain_text["name"], (rule, ruled_text)
        # "expires: <date> (in N min)": the date is the same
        assert ruled_text["expires"].split(" (")[0] == \
            plain_text["expires"].split(" (")[0], (rule, ruled_text)
        assert ruled["has_profile"] is True
    if api == "insight":
        assert plain["name"] == "alice"          # auth/user's cn
        assert plain["has_profile"] is False
    else:
        assert plain["name"] == "Alice Smith"    # looker has no login name
    assert plain["expires_at"] > 0
