/* SPDX-License-Identifier: MIT */
/*
 * test_embed.c - Looker signed embedding: the local signature of
 * common/embed.c (api-spec.md C) and the server-signed sso_url call of
 * common/protocol.c (B.6).  Each test is named by what it protects.
 *
 * Expected URLs and strings-to-sign beyond the spec's two vectors were
 * computed independently with Python's hmac, hashlib, json.dumps(
 * ensure_ascii=False, separators=(',', ':')) and urllib.parse.quote(
 * safe='-_.~'), and are pasted here as literals.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"

#define SECRET "test-embed-secret-0123456789abcdef"
#define NONCE "0123456789abcdef0123456789abcdef"
#define TIME 1700000000

/* api-spec.md C.4, vector 1. */
#define V1_STS                                                                 \
    "looker.example.com\n"                                                     \
    "/login/embed/%2Fembed%2Fdashboards%2F42\n"                                \
    "\"0123456789abcdef0123456789abcdef\"\n"                                   \
    "1700000000\n"                                                             \
    "3600\n"                                                                   \
    "\"user-57\"\n"                                                            \
    "[\"access_data\",\"see_looks\",\"see_user_dashboards\"]\n"                \
    "[\"thelook\"]\n"                                                          \
    "[\"4\",\"3\"]\n"                                                          \
    "\"acme\"\n"                                                               \
    "{\"vendor_id\":\"17\"}\n"                                                 \
    "{}"
#define V1_URL                                                                 \
    "https://looker.example.com/login/embed/%2Fembed%2Fdashboards%2F42"        \
    "?nonce=%220123456789abcdef0123456789abcdef%22&time=1700000000"            \
    "&session_length=3600&external_user_id=%22user-57%22"                      \
    "&permissions=%5B%22access_data%22%2C%22see_looks%22%2C%22see_user_"       \
    "dashboards%22%5D&models=%5B%22thelook%22%5D"                              \
    "&group_ids=%5B%224%22%2C%223%22%5D&external_group_id=%22acme%22"          \
    "&user_attributes=%7B%22vendor_id%22%3A%2217%22%7D&access_filters=%7B%7D"  \
    "&first_name=%22Alice%22&last_name=%22Jones%22&force_logout_login=true"    \
    "&signature=4FscyxXLauOJNUj9OYP3nbhkOhU%3D"
#define V1_SIG "4FscyxXLauOJNUj9OYP3nbhkOhU="
#define V2_SIG "IRnOoKNxLbmkhIv307INofsy1bA="

static const char *const v_permissions[] = {"access_data", "see_looks",
                                            "see_user_dashboards"};
static const char *const v_models[] = {"thelook"};
static const char *const v_groups[] = {"4", "3"};
static const tg_embed_attr_t v_attrs[] = {{"vendor_id", "17"}};

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

static void
assert_starts_with(const char *s, const char *prefix)
{
    if (strncmp(s, prefix, strlen(prefix)) != 0) {
        fail_msg("\"%s\" does not start with \"%s\"", s, prefix);
    }
}

/* The common inputs of the spec's vectors, without the optional lines. */
static void
vector2_params(tg_embed_params_t *p)
{
    tg_embed_params_init(p);
    p->host = "looker.example.com";
    p->embed_path = "/embed/dashboards/42";
    p->external_user_id = "user-57";
    p->permissions = v_permissions;
    p->n_permissions = 3;
    p->models = v_models;
    p->n_models = 1;
    p->session_length = 3600;
    p->nonce = NONCE;
    p->time = TIME;
}

/* Vector 1: all optional lines, and the names of the full URL. */
static void
vector1_params(tg_embed_params_t *p)
{
    vector2_params(p);
    p->group_ids = v_groups;
    p->n_group_ids = 2;
    p->external_group_id = "acme";
    p->user_attributes = v_attrs;
    p->n_user_attributes = 1;
    p->first_name = "Alice";
    p->last_name = "Jones";
}

/* Sign with SECRET; the test fails unless it works. */
static void
sign_ok(const tg_embed_params_t *p, char **url, char **sts)
{
    tg_diag_t diag;
    tg_err_t err;

    tg_diag_clear(&diag);
    err = tg_embed_sign(p, SECRET, strlen(SECRET), url, sts, &diag);
    if (err != TG_OK) {
        fail_msg("tg_embed_sign: %s: %s", tg_err_name(err), diag.message);
    }
    assert_string_equal(diag.message, "");
    assert_non_null(*url);
    if (sts != NULL) {
        assert_non_null(*sts);
    }
}

/* The signature of a URL, percent-decoded into out. */
static void
signature_of(const char *url, char out[TG__HMAC_SHA1_B64_SIZE])
{
    const char *s = strstr(url, "&signature=");
    size_t o = 0;

    assert_non_null(s);
    for (s += strlen("&signature="); *s != '\0'; s++) {
        assert_true(o < TG__HMAC_SHA1_B64_SIZE - 1);
        if (*s == '%') {
            unsigned v = 0;
            assert_int_equal(sscanf(s + 1, "%2X", &v), 1);
            out[o++] = (char) v;
            s += 2;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    assert_int_equal(o, TG__HMAC_SHA1_B64_SIZE - 1);
}

static void
sign_and_compare(const tg_embed_params_t *p, const char *want_sts,
                 const char *want_url)
{
    char *url = NULL, *sts = NULL;

    sign_ok(p, &url, &sts);
    assert_string_equal(sts, want_sts);
    assert_string_equal(url, want_url);
    tg_secret_free(url);
    tg_secret_free(sts);
}

/* ---------------------------------------------------------------------- */
/* The primitive and the spec's vectors                                   */
/* ---------------------------------------------------------------------- */

static void
hmac_sha1_base64_matches_rfc2202(void **state)
{
    static const char data6[] =
        "Test Using Larger Than Block-Size Key - Hash Key First";
    char key1[20], key6[80], out[TG__HMAC_SHA1_B64_SIZE];

    (void) state;
    /* Test case 2: a key shorter than the block. */
    assert_int_equal(tg__hmac_sha1_base64("Jefe", 4,
                                          "what do ya want for nothing?", 28,
                                          out, NULL),
                     TG_OK);
    assert_string_equal(out, "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    /* Test case 1: binary key bytes are used as they are. */
    memset(key1, 0x0b, sizeof(key1));
    assert_int_equal(
        tg__hmac_sha1_base64(key1, sizeof(key1), "Hi There", 8, out, NULL),
        TG_OK);
    assert_string_equal(out, "thcxhlUFcmTii8C2+zeMjvFGvgA=");
    /* Test case 6: a key longer than the block is hashed first. */
    memset(key6, 0xaa, sizeof(key6));
    assert_int_equal(tg__hmac_sha1_base64(key6, sizeof(key6), data6,
                                          strlen(data6), out, NULL),
                     TG_OK);
    assert_string_equal(out, "qkrl4VJy0A6VcFY3zoo7Ve1AIRI=");
}

static void
vector1_url_and_string_to_sign_byte_for_byte(void **state)
{
    tg_embed_params_t p;

    (void) state;
    vector1_params(&p);
    sign_and_compare(&p, V1_STS, V1_URL);
    assert_int_equal(strlen(V1_STS), 220);
}

static void
vector2_leaves_out_the_optional_lines_and_parameters(void **state)
{
    tg_embed_params_t p;
    char *url = NULL, *sts = NULL, sig[TG__HMAC_SHA1_B64_SIZE];

    (void) state;
    vector2_params(&p);
    sign_ok(&p, &url, &sts);
    signature_of(url, sig);
    assert_string_equal(sig, V2_SIG);
    assert_int_equal(strlen(sts), 184);
    assert_string_equal(strstr(sts, "[\"thelook\"]"), "[\"thelook\"]\n{}");
    assert_null(strstr(url, "group_ids="));
    assert_null(strstr(url, "external_group_id="));
    assert_null(strstr(url, "user_attributes="));
    assert_null(strstr(url, "first_name="));
    assert_null(strstr(url, "user_timezone="));
    tg_secret_free(url);
    tg_secret_free(sts);
}

static void
string_to_sign_is_lf_joined_without_trailing_lf_or_cr(void **state)
{
    tg_embed_params_t p;
    char *url = NULL, *sts = NULL;
    size_t lines = 1;
    const char *c;

    (void) state;
    vector1_params(&p);
    sign_ok(&p, &url, &sts);
    assert_true(sts[strlen(sts) - 1] != '\n');
    assert_null(strchr(sts, '\r'));
    for (c = sts; *c != '\0'; c++) {
        lines += *c == '\n';
    }
    assert_int_equal(lines, 12);
    tg_secret_free(url);
    tg_secret_free(sts);
}

/* ---------------------------------------------------------------------- */
/* What the signature covers                                              */
/* ---------------------------------------------------------------------- */

#define N_SIGNED_CHANGES 15

/* Change one signed input of vector 1 (which = 0 .. N_SIGNED_CHANGES-1). */
static void
change_signed(tg_embed_params_t *p, int which)
{
    static const char *const perms2[] = {"access_data", "see_looks"};
    static const char *const models2[] = {"thelook", "other"};
    static const char *const groups2[] = {"4", "5"};
    static const tg_embed_attr_t attrs2[] = {{"vendor_id", "18"}};
    static const tg_embed_attr_t attrs3[] = {{"vendor", "17"}};

    switch (which) {
    case 0:
        p->host = "looker.example.com:9999";
        break;
    case 1:
        p->embed_path = "/embed/dashboards/43";
        break;
    case 2:
        p->nonce = "1123456789abcdef0123456789abcdef";
        break;
    case 3:
        p->time = TIME + 1;
        break;
    case 4:
        p->session_length = 3601;
        break;
    case 5:
        p->external_user_id = "user-58";
        break;
    case 6:
        p->n_permissions = 2;
        p->permissions = perms2;
        break;
    case 7:
        p->n_models = 2;
        p->models = models2;
        break;
    case 8:
        p->group_ids = groups2;
        break;
    case 9:
        p->external_group_id = "acme2";
        break;
    case 10:
        p->user_attributes = attrs2;
        break;
    case 11:
        p->user_attributes = attrs3;
        break;
    case 12:
        p->n_user_attributes = 0;
        break;
    case 13:
        p->n_group_ids = 0;
        break;
    case 14:
        p->external_group_id = NULL;
        break;
    default:
        fail_msg("no change %d", which);
    }
}

static void
every_signed_line_changes_the_signature(void **state)
{
    char sigs[N_SIGNED_CHANGES][TG__HMAC_SHA1_B64_SIZE];
    tg_embed_params_t p;
    char *url;
    int i, j;

    (void) state;
    for (i = 0; i < N_SIGNED_CHANGES; i++) {
        vector1_params(&p);
        change_signed(&p, i);
        url = NULL;
        sign_ok(&p, &url, NULL);
        signature_of(url, sigs[i]);
        tg_secret_free(url);
        if (strcmp(sigs[i], V1_SIG) == 0) {
            fail_msg("change %d left the signature as it was", i);
        }
        for (j = 0; j < i; j++) {
            assert_string_not_equal(sigs[i], sigs[j]);
        }
    }
}

static void
unsigned_parameters_leave_the_signature_alone(void **state)
{
    tg_embed_params_t p;
    char *url = NULL, *sts = NULL, sig[TG__HMAC_SHA1_B64_SIZE];

    (void) state;
    vector1_params(&p);
    p.first_name = "Bob";
    p.last_name = NULL;
    p.user_timezone = "Europe/Paris";
    p.force_logout_login = 0;
    sign_ok(&p, &url, &sts);
    signature_of(url, sig);
    assert_string_equal(sig, V1_SIG);
    assert_string_equal(sts, V1_STS);
    assert_contains(url, "&first_name=%22Bob%22&user_timezone=%22Europe%2F"
                         "Paris%22&force_logout_login=false&signature=");
    assert_null(strstr(url, "last_name="));
    tg_secret_free(url);
    tg_secret_free(sts);
}

/* ---------------------------------------------------------------------- */
/* Encoding edge cases (expected values from Python, see the top)         */
/* ---------------------------------------------------------------------- */

static void
non_ascii_names_ampersand_plus_and_space_are_encoded(void **state)
{
    static const char *const perms[] = {"access_data", "see_looks"};
    static const char *const models[] = {"the look&co"};
    tg_embed_params_t p;

    (void) state;
    vector2_params(&p);
    p.external_user_id = "a&b+c d";
    p.permissions = perms;
    p.n_permissions = 2;
    p.models = models;
    p.first_name = "Zo\xc3\xab";
    p.last_name = "M\xc3\xbcller-\xc5\x81ukasz";
    sign_and_compare(
        &p,
        "looker.example.com\n/login/embed/%2Fembed%2Fdashboards%2F42\n"
        "\"0123456789abcdef0123456789abcdef\"\n1700000000\n3600\n"
        "\"a&b+c d\"\n[\"access_data\",\"see_looks\"]\n[\"the look&co\"]\n{}",
        "https://looker.example.com/login/embed/%2Fembed%2Fdashboards%2F42"
        "?nonce=%220123456789abcdef0123456789abcdef%22&time=1700000000"
        "&session_length=3600&external_user_id=%22a%26b%2Bc%20d%22"
        "&permissions=%5B%22access_data%22%2C%22see_looks%22%5D"
        "&models=%5B%22the%20look%26co%22%5D&access_filters=%7B%7D"
        "&first_name=%22Zo%C3%AB%22&last_name=%22M%C3%BCller-%C5%81ukasz%22"
        "&force_logout_login=true&signature=p6jufaJ1IjOv0j4El88%2FygI5Tbc%3D");
}

static void
embed_path_with_its_own_query_is_one_component(void **state)
{
    static const char *const perms[] = {"access_data"};
    tg_embed_params_t p;

    (void) state;
    vector2_params(&p);
    p.scheme = "http";
    p.host = "127.0.0.1:8080";
    p.embed_path = "/embed/looks/4?embed_domain=https://app.example.com&sdk=2";
    p.permissions = perms;
    p.n_permissions = 1;
    p.session_length = 0;
    p.force_logout_login = 0;
    sign_and_compare(
        &p,
        "127.0.0.1:8080\n/login/embed/%2Fembed%2Flooks%2F4%3Fembed_domain%3D"
        "https%3A%2F%2Fapp.example.com%26sdk%3D2\n"
        "\"0123456789abcdef0123456789abcdef\"\n1700000000\n0\n\"user-57\"\n"
        "[\"access_data\"]\n[\"thelook\"]\n{}",
        "http://127.0.0.1:8080/login/embed/%2Fembed%2Flooks%2F4%3Fembed_"
        "domain%3Dhttps%3A%2F%2Fapp.example.com%26sdk%3D2"
        "?nonce=%220123456789abcdef0123456789abcdef%22&time=1700000000"
        "&session_length=0&external_user_id=%22user-57%22"
        "&permissions=%5B%22access_data%22%5D&models=%5B%22thelook%22%5D"
        "&access_filters=%7B%7D&force_logout_login=false"
        "&signature=aVbzG2roF%2FAYpUwtKzqFO5Bdf3A%3D");
}

static void
empty_optional_values_are_sent_and_signed(void **state)
{
    static const char *const groups[] = {"17"};
    tg_embed_params_t p;

    (void) state;
    vector2_params(&p);
    p.host = "looker.example.com:9999";
    p.embed_path = "/embed/dashboards/model::dash";
    p.n_permissions = 0;
    p.n_models = 0;
    p.group_ids = groups;
    p.n_group_ids = 1;
    p.external_group_id = "";
    p.first_name = "";
    p.last_name = "";
    p.session_length = TG_EMBED_SESSION_MAX;
    sign_and_compare(
        &p,
        "looker.example.com:9999\n/login/embed/%2Fembed%2Fdashboards%2F"
        "model%3A%3Adash\n\"0123456789abcdef0123456789abcdef\"\n1700000000\n"
        "2592000\n\"user-57\"\n[]\n[]\n[\"17\"]\n\"\"\n{}",
        "https://looker.example.com:9999/login/embed/%2Fembed%2Fdashboards"
        "%2Fmodel%3A%3Adash?nonce=%220123456789abcdef0123456789abcdef%22"
        "&time=1700000000&session_length=2592000"
        "&external_user_id=%22user-57%22&permissions=%5B%5D&models=%5B%5D"
        "&group_ids=%5B%2217%22%5D&external_group_id=%22%22"
        "&access_filters=%7B%7D&first_name=%22%22&last_name=%22%22"
        "&force_logout_login=true&signature=lmDKvaItlrLdbOmVDTYqdDEoK8A%3D");
}

static void
user_attributes_with_quotes_backslash_slash_and_utf8(void **state)
{
    static const char *const perms[] = {"access_data", "see_looks"};
    static const tg_embed_attr_t attrs[] = {
        {"locale", "fr_FR"},
        {"company", "A&B \"Q\" \\ / \xc3\xbc=1"},
    };
    tg_embed_params_t p;

    (void) state;
    vector2_params(&p);
    p.permissions = perms;
    p.n_permissions = 2;
    p.session_length = 300;
    p.user_attributes = attrs;
    p.n_user_attributes = 2;
    p.user_timezone = "US/Pacific";
    sign_and_compare(
        &p,
        "looker.example.com\n/login/embed/%2Fembed%2Fdashboards%2F42\n"
        "\"0123456789abcdef0123456789abcdef\"\n1700000000\n300\n\"user-57\"\n"
        "[\"access_data\",\"see_looks\"]\n[\"thelook\"]\n"
        "{\"locale\":\"fr_FR\",\"company\":\"A&B \\\"Q\\\" \\\\ / "
        "\xc3\xbc=1\"}\n{}",
        "https://looker.example.com/login/embed/%2Fembed%2Fdashboards%2F42"
        "?nonce=%220123456789abcdef0123456789abcdef%22&time=1700000000"
        "&session_length=300&external_user_id=%22user-57%22"
        "&permissions=%5B%22access_data%22%2C%22see_looks%22%5D"
        "&models=%5B%22thelook%22%5D&user_attributes=%7B%22locale%22%3A%22"
        "fr_FR%22%2C%22company%22%3A%22A%26B%20%5C%22Q%5C%22%20%5C%5C%20%2F"
        "%20%C3%BC%3D1%22%7D&access_filters=%7B%7D"
        "&user_timezone=%22US%2FPacific%22&force_logout_login=true"
        "&signature=xNKF9lcQOLjDf%2FGNRXKIifaI8jU%3D");
}

/* ---------------------------------------------------------------------- */
/* The check: every error names its parameter                            */
/* ---------------------------------------------------------------------- */

typedef struct bad_case {
    const char *want; /* the message starts with this */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"host: empty"},
    {"host: empty"},
    {"host: want HOST or HOST:PORT, without a scheme"},
    {"host: want HOST or HOST:PORT without a scheme or path"},
    {"host: leave out the default port 443"},
    {"host: the port must be 1 to 65535"},
    {"host: an empty label"},
    {"host: a bad IPv6 literal"},
    {"scheme: must be https or http"},
    {"scheme: http only for a loopback host"},
    {"embed_path: empty"},
    {"embed_path: must be /embed/ and what to embed"},
    {"embed_path: a control byte, space or non-ASCII byte at offset 9"},
    {"embed_path: a control byte, space or non-ASCII byte at offset 8"},
    {"external_user_id: empty"},
    {"external_user_id: empty"},
    {"permissions: 'admin' is not allowed for embedding"},
    {"models: entry 2 is empty"},
    {"models: none given"},
    {"permissions: none given"},
    {"first_name: not UTF-8"},
    {"last_name: a control character at offset 1"},
    {"first_name: a control character at offset 0"},
    {"user_timezone: empty"},
    {"external_group_id: longer than 81 characters"},
    {"nonce: longer than 254 characters"},
    {"nonce: empty"},
    {"session_length: -1 is below 0"},
    {"session_length: 2592001 is above 2592000"},
    {"user_attributes: entry 1 has an empty key"},
    {"user_attributes: 'vendor_id' is given twice"},
    {"user_attributes: a control character at offset 0"},
    {"group_ids: entry 1 is empty"},
    {"first_name: longer than 1024 bytes"},
    {"time: negative"},
    {"permissions: 1 entries but no list"},
    {"user_attributes: empty"},
    {"embed_path: a control byte, space or non-ASCII byte at offset 7"},
    {"host: the port must be 1 to 65535"},
    {"host: leave out the default port 80"},
    {"embed_path: must be /embed/ and what to embed"},
};

/* Break vector 1 the way bad_cases[which] expects. */
static void
break_params(tg_embed_params_t *p, int which, char *buf, size_t size)
{
    static const char *const admin[] = {"admin"};
    static const char *const models_gap[] = {"thelook", ""};
    static const char *const empty_group[] = {""};
    static const tg_embed_attr_t no_key[] = {{"", "x"}};
    static const tg_embed_attr_t twice[] = {{"vendor_id", "1"},
                                            {"vendor_id", "2"}};
    static const tg_embed_attr_t ctrl[] = {{"vendor_id", "\x01"}};
    static const tg_embed_attr_t null_value[] = {{"vendor_id", NULL}};

    switch (which) {
    case 0:
        p->host = NULL;
        break;
    case 1:
        p->host = "";
        break;
    case 2:
        p->host = "https://looker.example.com";
        break;
    case 3:
        p->host = "looker.example.com/x";
        break;
    case 4:
        p->host = "looker.example.com:443";
        break;
    case 5:
        p->host = "looker.example.com:0";
        break;
    case 6:
        p->host = "looker..example.com";
        break;
    case 7:
        p->host = "[::1";
        break;
    case 8:
        p->scheme = "ftp";
        break;
    case 9:
        p->scheme = "http";
        break;
    case 10:
        p->embed_path = NULL;
        break;
    case 11:
        p->embed_path = "/dashboards/42";
        break;
    case 12:
        p->embed_path = "/embed/ab\r\nX-Injected: 1";
        break;
    case 13:
        p->embed_path = "/embed/a b";
        break;
    case 14:
        p->external_user_id = "";
        break;
    case 15:
        p->external_user_id = NULL;
        break;
    case 16:
        p->permissions = admin;
        p->n_permissions = 1;
        break;
    case 17:
        p->models = models_gap;
        p->n_models = 2;
        break;
    case 18:
        p->n_models = 0;
        p->n_group_ids = 0;
        break;
    case 19:
        p->n_permissions = 0;
        p->n_group_ids = 0;
        break;
    case 20:
        p->first_name = "Al\xff";
        break;
    case 21:
        p->last_name = "J\tones";
        break;
    case 22:
        p->first_name = "\xc2\x85";
        break;
    case 23:
        p->user_timezone = "";
        break;
    case 24:
        memset(buf, 'g', 82);
        buf[82] = '\0';
        p->external_group_id = buf;
        break;
    case 25:
        memset(buf, 'n', 255);
        buf[255] = '\0';
        p->nonce = buf;
        break;
    case 26:
        p->nonce = "";
        break;
    case 27:
        p->session_length = -1;
        break;
    case 28:
        p->session_length = TG_EMBED_SESSION_MAX + 1;
        break;
    case 29:
        p->user_attributes = no_key;
        break;
    case 30:
        p->user_attributes = twice;
        p->n_user_attributes = 2;
        break;
    case 31:
        p->user_attributes = ctrl;
        break;
    case 32:
        p->group_ids = empty_group;
        p->n_group_ids = 1;
        break;
    case 33:
        memset(buf, 'a', TG_EMBED_FIELD_MAX + 1);
        buf[TG_EMBED_FIELD_MAX + 1] = '\0';
        p->first_name = buf;
        break;
    case 34:
        p->time = -5;
        break;
    case 35:
        p->permissions = NULL;
        p->n_permissions = 1;
        break;
    case 36:
        p->user_attributes = null_value;
        break;
    case 37:
        p->embed_path = "/embed/\xc3\xa9";
        break;
    case 38:
        p->host = "looker.example.com:65536";
        break;
    case 39:
        p->scheme = "http";
        p->host = "127.0.0.1:80";
        break;
    case 40:
        p->embed_path = "/embed/";
        break;
    default:
        fail_msg("no bad case %d", which);
    }
    assert_true(size > 1100);
}

static void
every_check_error_names_its_parameter(void **state)
{
    char buf[1200];
    tg_embed_params_t p;
    tg_diag_t diag;
    char *url, *sts;
    size_t i;
    tg_err_t err;

    (void) state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        vector1_params(&p);
        break_params(&p, (int) i, buf, sizeof(buf));
        tg_diag_clear(&diag);
        err = tg_embed_params_check(&p, &diag);
        if (err != TG_INPUT || strncmp(diag.message, bad_cases[i].want,
                                       strlen(bad_cases[i].want)) != 0) {
            fail_msg("case %zu: %s \"%s\", want TG_INPUT \"%s...\"", i,
                     tg_err_name(err), diag.message, bad_cases[i].want);
        }
        /* The signer runs the same check first and hands out nothing. */
        url = (char *) "untouched";
        sts = (char *) "untouched";
        tg_diag_clear(&diag);
        err = tg_embed_sign(&p, SECRET, strlen(SECRET), &url, &sts, &diag);
        assert_int_equal(err, TG_INPUT);
        assert_starts_with(diag.message, bad_cases[i].want);
        assert_null(url);
        assert_null(sts);
        assert_null(strstr(diag.message, SECRET));
        /* A NULL diag gives the same answer. */
        assert_int_equal(tg_embed_params_check(&p, NULL), TG_INPUT);
    }
    assert_int_equal(tg_embed_params_check(NULL, NULL), TG_INPUT);
}

static void
limits_are_inclusive_and_loopback_hosts_may_use_http(void **state)
{
    static const char *const hosts[] = {"127.0.0.1:8080", "127.9.8.7",
                                        "localhost:9999", "[::1]:8080",
                                        "localhost"};
    char group[200], nonce[255];
    tg_embed_params_t p;
    tg_diag_t diag;
    size_t i;

    (void) state;
    vector1_params(&p);
    /* 81 characters of two bytes each: characters count, not bytes. */
    for (i = 0; i < 81; i++) {
        memcpy(group + 2 * i, "\xc3\xa9", 2);
    }
    group[162] = '\0';
    p.external_group_id = group;
    memset(nonce, 'n', 254);
    nonce[254] = '\0';
    p.nonce = nonce;
    p.session_length = 0;
    tg_diag_clear(&diag);
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_OK);
    p.session_length = TG_EMBED_SESSION_MAX;
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_OK);
    p.host = "looker.example.com:19999";
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_OK);
    p.host = "[2001:db8::1]:8443";
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_OK);
    p.scheme = "http";
    for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        p.host = hosts[i];
        if (tg_embed_params_check(&p, &diag) != TG_OK) {
            fail_msg("%s refused: %s", hosts[i], diag.message);
        }
    }
    p.host = "128.0.0.1";
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_INPUT);
    assert_starts_with(diag.message, "scheme: http only");
}

/*
 * TG_EMBED_FIELD_MAX and TG_EMBED_PATH_MAX are public so that verifiers
 * (the devserver, the nginx module) can accept everything the signer
 * signs: they must be the signer's real edges, inclusive.
 */
static void
field_and_path_limits_are_the_public_macros(void **state)
{
    static const struct {
        const char *param;
        const char *prefix;
        size_t max;
    } edges[] = {
        {"external_user_id", "", TG_EMBED_FIELD_MAX},
        {"embed_path", "/embed/", TG_EMBED_PATH_MAX},
    };
    char text[TG_EMBED_FIELD_MAX + TG_EMBED_PATH_MAX + 2];
    tg_embed_params_t p;
    tg_diag_t diag;
    size_t i, n;

    (void) state;
    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        vector1_params(&p);
        n = strlen(edges[i].prefix);
        memcpy(text, edges[i].prefix, n);
        memset(text + n, 'x', edges[i].max + 1 - n);
        text[edges[i].max] = '\0';
        if (i == 0) {
            p.external_user_id = text;
        } else {
            p.embed_path = text;
        }
        tg_diag_clear(&diag);
        if (tg_embed_params_check(&p, &diag) != TG_OK) {
            fail_msg("%s of %zu bytes refused: %s", edges[i].param,
                     edges[i].max, diag.message);
        }
        text[edges[i].max] = 'x';
        text[edges[i].max + 1] = '\0';
        assert_int_equal(tg_embed_params_check(&p, &diag), TG_INPUT);
        assert_starts_with(diag.message, edges[i].param);
        assert_non_null(strstr(diag.message, ": longer than"));
    }
}

/*
 * The host is line 1 of the string-to-sign and must be the text browsers
 * put in Host: they lower-case names, rewrite numeric hosts as dotted quads
 * and IPv6 literals in one canonical form.  Any other spelling would be
 * signed as one text and verified as another, so it is refused with the
 * form to use; the canonical forms pass.  (Regression: Looker.Example.com,
 * [0:0:0:0:0:0:0:1] and 0x7f.1 used to be signed as given.)
 */
static void
host_must_be_spelled_as_browsers_send_it(void **state)
{
    static const struct {
        const char *host;
        const char *want; /* NULL: accepted */
    } cases[] = {
        {"Looker.example.com", "host: an upper-case letter at offset 0"},
        {"looker.EXAMPLE.com:9999", "host: an upper-case letter at offset 7"},
        {"LOCALHOST", "host: an upper-case letter at offset 0"},
        {"[0:0:0:0:0:0:0:1]", "host: write the IPv6 literal as browsers "
                              "send it: [::1]"},
        {"[2001:DB8::1]", "host: write the IPv6 literal as browsers send "
                          "it: [2001:db8::1]"},
        {"[2001:db8:0:0:1:0:0:1]:8443",
         "host: write the IPv6 literal as "
         "browsers send it: [2001:db8::1:0:0:1]"},
        {"[::ffff:1.2.3.4]", "host: write the IPv6 literal as browsers send "
                             "it: [::ffff:102:304]"},
        {"[0:0:1:0:0:0:0:0]", "host: write the IPv6 literal as browsers "
                              "send it: [0:0:1::]"},
        {"127.000.0.1", "host: a numeric host must be a dotted-quad"},
        {"0x7f.1", "host: a numeric host must be a dotted-quad"},
        {"10.1.2", "host: a numeric host must be a dotted-quad"},
        {"looker.09", "host: a numeric host must be a dotted-quad"},
        {"looker.example.com:8443/", "host: want HOST or HOST:PORT without "
                                     "a scheme or path"},
        {"127.0.0.1:8080?x", "host: want HOST or HOST:PORT without a "
                             "scheme or path"},
        {"looker.example.com", NULL},
        {"10.1.2.3:8443", NULL},
        {"looker.b9", NULL},
        {"[2001:db8::1:0:0:1]", NULL},
        {"[1::2:0:0:3]", NULL},
        {"[::ffff:102:304]", NULL},
        {"[::]:8443", NULL},
    };
    tg_embed_params_t p;
    tg_diag_t diag;
    char *url, *sts;
    size_t i;
    tg_err_t err;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vector1_params(&p);
        p.host = cases[i].host;
        tg_diag_clear(&diag);
        err = tg_embed_params_check(&p, &diag);
        if (cases[i].want == NULL) {
            if (err != TG_OK) {
                fail_msg("%s refused: %s", cases[i].host, diag.message);
            }
            continue;
        }
        if (err != TG_INPUT ||
            strncmp(diag.message, cases[i].want, strlen(cases[i].want)) != 0) {
            fail_msg("%s: %s \"%s\", want TG_INPUT \"%s...\"", cases[i].host,
                     tg_err_name(err), diag.message, cases[i].want);
        }
        url = NULL;
        sts = NULL;
        assert_int_equal(
            tg_embed_sign(&p, SECRET, strlen(SECRET), &url, &sts, &diag),
            TG_INPUT);
        assert_null(url);
        assert_null(sts);
    }
}

static void
the_url_has_a_length_cap_that_the_check_enforces(void **state)
{
    static const char *models[64];
    char name[200];
    tg_embed_params_t p;
    tg_diag_t diag;
    char *url = NULL;
    size_t i;

    (void) state;
    memset(name, 'm', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    for (i = 0; i < 64; i++) {
        models[i] = name;
    }
    vector1_params(&p);
    p.models = models;
    /* 30 models of 199 bytes: about 6.5 KiB, under the cap. */
    p.n_models = 30;
    tg_diag_clear(&diag);
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_OK);
    sign_ok(&p, &url, NULL);
    assert_true(strlen(url) <= 8192);
    tg_secret_free(url);
    /* 40 of them: above 8 KiB. */
    p.n_models = 40;
    tg_diag_clear(&diag);
    assert_int_equal(tg_embed_params_check(&p, &diag), TG_INPUT);
    assert_starts_with(diag.message, "url: the signed URL would be ");
    assert_contains(diag.message, "above 8192");
    url = (char *) "untouched";
    assert_int_equal(
        tg_embed_sign(&p, SECRET, strlen(SECRET), &url, NULL, NULL), TG_INPUT);
    assert_null(url);
}

static void
the_secret_must_be_given_and_is_never_quoted(void **state)
{
    char big[TG_SECRET_MAX + 2];
    char sig[TG__HMAC_SHA1_B64_SIZE], sig2[TG__HMAC_SHA1_B64_SIZE];
    tg_embed_params_t p;
    tg_diag_t diag;
    char *url = NULL;

    (void) state;
    vector1_params(&p);
    tg_diag_clear(&diag);
    assert_int_equal(tg_embed_sign(&p, NULL, 0, &url, NULL, &diag), TG_INPUT);
    assert_string_equal(diag.message, "secret: empty");
    tg_diag_clear(&diag);
    assert_int_equal(tg_embed_sign(&p, SECRET, 0, &url, NULL, &diag), TG_INPUT);
    assert_string_equal(diag.message, "secret: empty");
    memset(big, 's', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tg_diag_clear(&diag);
    assert_int_equal(tg_embed_sign(&p, big, strlen(big), &url, NULL, &diag),
                     TG_INPUT);
    assert_string_equal(diag.message, "secret: longer than 1024 bytes");
    assert_null(url);
    assert_int_equal(
        tg_embed_sign(&p, SECRET, strlen(SECRET), NULL, NULL, NULL), TG_INPUT);
    /* The key is the secret's bytes: a different secret signs differently,
     * and an embedded NUL counts. */
    url = NULL;
    assert_int_equal(
        tg_embed_sign(&p, SECRET "x", strlen(SECRET) + 1, &url, NULL, NULL),
        TG_OK);
    signature_of(url, sig);
    assert_string_not_equal(sig, V1_SIG);
    tg_secret_free(url);
    url = NULL;
    assert_int_equal(
        tg_embed_sign(&p, SECRET "\0x", strlen(SECRET) + 2, &url, NULL, NULL),
        TG_OK);
    signature_of(url, sig2);
    assert_string_not_equal(sig2, V1_SIG);
    assert_string_not_equal(sig2, sig);
    tg_secret_free(url);
}

/* ---------------------------------------------------------------------- */
/* Fresh nonces and time                                                  */
/* ---------------------------------------------------------------------- */

/* The nonce of a URL (32 hex characters between %22 and %22). */
static void
nonce_of(const char *url, char out[33])
{
    const char *s = strstr(url, "?nonce=%22");
    size_t i;

    assert_non_null(s);
    s += strlen("?nonce=%22");
    for (i = 0; i < 32; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            fail_msg("nonce character %zu is not lower-case hex: %s", i, url);
        }
        out[i] = s[i];
    }
    out[32] = '\0';
    assert_true(strncmp(s + 32, "%22&time=", 9) == 0);
}

static void
fresh_nonces_are_32_hex_and_differ(void **state)
{
    tg_embed_params_t p;
    char *url1 = NULL, *url2 = NULL, *sts = NULL, n1[33], n2[33], line[40];
    char sig1[TG__HMAC_SHA1_B64_SIZE], sig2[TG__HMAC_SHA1_B64_SIZE];

    (void) state;
    vector1_params(&p);
    p.nonce = NULL;
    sign_ok(&p, &url1, &sts);
    sign_ok(&p, &url2, NULL);
    nonce_of(url1, n1);
    nonce_of(url2, n2);
    assert_string_not_equal(n1, n2);
    /* The same nonce is signed, as a JSON string on line 3. */
    snprintf(line, sizeof(line), "\n\"%s\"\n", n1);
    assert_contains(sts, line);
    signature_of(url1, sig1);
    signature_of(url2, sig2);
    assert_string_not_equal(sig1, sig2);
    tg_secret_free(url1);
    tg_secret_free(url2);
    tg_secret_free(sts);
}

static void
time_zero_means_now(void **state)
{
    tg_embed_params_t p;
    char *url = NULL;
    const char *t;
    long long when;
    time_t before = time(NULL), after;

    (void) state;
    vector1_params(&p);
    p.time = 0;
    sign_ok(&p, &url, NULL);
    after = time(NULL);
    t = strstr(url, "&time=");
    assert_non_null(t);
    when = strtoll(t + 6, NULL, 10);
    assert_true(when >= (long long) before && when <= (long long) after);
    tg_secret_free(url);
}

static void
params_init_sets_looker_defaults(void **state)
{
    tg_embed_params_t p;

    (void) state;
    memset(&p, 0x5a, sizeof(p));
    tg_embed_params_init(&p);
    assert_int_equal(p.session_length, TG_EMBED_SESSION_DEFAULT);
    assert_int_equal(p.force_logout_login, 1);
    assert_null(p.host);
    assert_null(p.scheme);
    assert_null(p.nonce);
    assert_int_equal(p.time, 0);
    assert_int_equal(
        p.n_permissions + p.n_models + p.n_group_ids + p.n_user_attributes, 0);
    tg_embed_params_init(NULL);
}

/* ---------------------------------------------------------------------- */
/* Server signing: POST /embed/sso_url                                    */
/* ---------------------------------------------------------------------- */

static tg_config_t *
looker_config(void)
{
    tg_config_t *cfg = tg_config_new();

    assert_non_null(cfg);
    assert_int_equal(tg_config_set(cfg, "api", "looker", "test", NULL), TG_OK);
    assert_int_equal(tg_config_set(cfg, "url",
                                   "https://looker.example.com:19999/", "test",
                                   NULL),
                     TG_OK);
    return cfg;
}

static void
sso_url_request_carries_the_grants_as_embed_sso_params(void **state)
{
    tg_config_t *cfg = looker_config();
    tg_embed_params_t p;
    tg_request_t req;
    tg_diag_t diag;

    (void) state;
    vector1_params(&p);
    p.user_timezone = "US/Pacific";
    tg_diag_clear(&diag);
    assert_int_equal(
        tg_build_embed_sso_url(cfg, "admin-token-1", &p, &req, &diag), TG_OK);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url,
                        "https://looker.example.com:19999/api/4.0/embed/"
                        "sso_url");
    assert_string_equal(req.authorization, "token admin-token-1");
    assert_string_equal(req.content_type, "application/json");
    assert_string_equal(req.accept, "application/json");
    assert_string_equal(
        req.body,
        "{\"target_url\":\"https://looker.example.com/embed/dashboards/42\","
        "\"session_length\":3600,\"force_logout_login\":true,"
        "\"external_user_id\":\"user-57\",\"permissions\":[\"access_data\","
        "\"see_looks\",\"see_user_dashboards\"],\"models\":[\"thelook\"],"
        "\"first_name\":\"Alice\",\"last_name\":\"Jones\","
        "\"user_timezone\":\"US/Pacific\",\"group_ids\":[\"4\",\"3\"],"
        "\"external_group_id\":\"acme\","
        "\"user_attributes\":{\"vendor_id\":\"17\"}}");
    assert_int_equal(req.body_len, strlen(req.body));
    tg_request_clear(&req);

    /* Only what is given: no optional fields, http loopback target. */
    vector2_params(&p);
    p.scheme = "http";
    p.host = "127.0.0.1:8080";
    p.embed_path = "/embed/looks/4?sdk=2";
    p.force_logout_login = 0;
    assert_int_equal(
        tg_build_embed_sso_url(cfg, "admin-token-1", &p, &req, NULL), TG_OK);
    assert_string_equal(
        req.body,
        "{\"target_url\":\"http://127.0.0.1:8080/embed/looks/4?sdk=2\","
        "\"session_length\":3600,\"force_logout_login\":false,"
        "\"external_user_id\":\"user-57\",\"permissions\":[\"access_data\","
        "\"see_looks\",\"see_user_dashboards\"],\"models\":[\"thelook\"]}");
    tg_request_clear(&req);
    tg_config_free(cfg);
}

static void
sso_url_request_is_refused_before_sending_anything_bad(void **state)
{
    tg_config_t *cfg = looker_config();
    static const tg_request_t zero;
    tg_embed_params_t p;
    tg_request_t req;
    tg_diag_t diag;

    (void) state;
    vector1_params(&p);
    /* A bad parameter: named, and the request stays empty. */
    p.session_length = TG_EMBED_SESSION_MAX + 1;
    tg_diag_clear(&diag);
    assert_int_equal(
        tg_build_embed_sso_url(cfg, "admin-token-1", &p, &req, &diag),
        TG_INPUT);
    assert_starts_with(diag.message, "session_length: ");
    assert_memory_equal(&req, &zero, sizeof(req));
    /* A bad token is never put in a header. */
    vector1_params(&p);
    tg_diag_clear(&diag);
    assert_int_equal(
        tg_build_embed_sso_url(cfg, "bad token\r\n", &p, &req, &diag),
        TG_INPUT);
    assert_memory_equal(&req, &zero, sizeof(req));
    /* insight has no such call. */
    assert_int_equal(tg_config_set(cfg, "api", "insight", "test", NULL), TG_OK);
    tg_diag_clear(&diag);
    assert_int_equal(
        tg_build_embed_sso_url(cfg, "admin-token-1", &p, &req, &diag),
        TG_INPUT);
    assert_contains(diag.message, "not supported by the insight API");
    assert_memory_equal(&req, &zero, sizeof(req));
    tg_config_free(cfg);
}

/* One parse of a canned answer. */
static tg_err_t
parse_answer(const tg_config_t *cfg, long status, const char *content_type,
             const char *body, long retry_after, char **url, tg_diag_t *diag)
{
    tg_response_t resp;

    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    resp.content_type = content_type;
    resp.body = body;
    resp.body_len = body != NULL ? strlen(body) : 0;
    resp.retry_after = retry_after;
    tg_diag_clear(diag);
    return tg_parse_embed_sso_url(cfg, &resp, url, diag);
}

#define SERVER_URL                                                             \
    "https://looker.example.com/login/embed/%2Fembed%2Fdashboards%2F42"        \
    "?nonce=%22abc%22&signature=SeCrEtSiGnAtUrE%3D"

static void
sso_url_answer_200_gives_the_url(void **state)
{
    tg_config_t *cfg = looker_config();
    tg_diag_t diag;
    char *url = NULL;

    (void) state;
    assert_int_equal(parse_answer(cfg, 200, "application/json; charset=utf-8",
                                  "{\"url\":\"" SERVER_URL "\"}", -1, &url,
                                  &diag),
                     TG_OK);
    assert_string_equal(url, SERVER_URL);
    assert_string_equal(diag.message, "");
    tg_secret_free(url);
    tg_config_free(cfg);
}

typedef struct answer_case {
    long status;
    const char *content_type;
    const char *body;
    long retry_after;
    tg_err_t err;
    const char *message; /* contained in the message */
} answer_case_t;

static const answer_case_t bad_answers[] = {
    {200, "application/json", "{}", -1, TG_PROTOCOL, "no url in the answer"},
    {200, "application/json", "{\"url\":null}", -1, TG_PROTOCOL,
     "no url in the answer"},
    {200, "application/json", "{\"url\":42}", -1, TG_PROTOCOL,
     "url in the answer is not a string"},
    {200, "application/json", "{\"url\":[\"" SERVER_URL "\"]}", -1, TG_PROTOCOL,
     "url in the answer is not a string"},
    {200, "application/json", "{\"url\":\"javascript:alert(1)\"}", -1,
     TG_PROTOCOL, "not an http(s) URL"},
    {200, "application/json", "{\"url\":\"" SERVER_URL "\\r\\nX: 1\"}", -1,
     TG_PROTOCOL, "not printable ASCII at offset"},
    {200, "application/json", "{\"url\":\"" SERVER_URL "\",\"url\":\"x\"}", -1,
     TG_PROTOCOL, "not valid JSON"},
    {200, "text/html", "<html>" SERVER_URL "</html>", -1, TG_PROTOCOL,
     "unexpected content type text/html"},
    {200, "application/json", "[\"" SERVER_URL "\"]", -1, TG_PROTOCOL,
     "not a JSON object"},
    {400, "application/json", "{\"message\":\"bad target_url\"}", -1,
     TG_VALIDATION, "bad target_url"},
    {401, "application/json", "{\"message\":\"Requires authentication.\"}", -1,
     TG_TOKEN_INVALID, "Requires authentication."},
    {403, "application/json", "{\"message\":\"Embedding is not enabled\"}", -1,
     TG_FORBIDDEN, "Embedding is not enabled"},
    {404, "application/json", "{\"message\":\"Not found\"}", -1, TG_NOT_FOUND,
     "HTTP 404"},
    {409, "application/json", "{\"message\":\"Resource Already Exists\"}", -1,
     TG_VALIDATION, "Resource Already Exists"},
    {422, "application/json",
     "{\"message\":\"Validation Failed\",\"errors\":[{\"field\":"
     "\"target_url\",\"code\":\"missing\",\"message\":\"This field is "
     "required.\"}]}",
     -1, TG_VALIDATION, "target_url: missing This field is required."},
    {429, "application/json", "{\"message\":\"Too Many Requests\"}", 30,
     TG_RATE_LIMITED, "retry after 30 s"},
    {500, "text/plain", "internal error", -1, TG_UNAVAILABLE, "HTTP 500"},
    {503, NULL, NULL, -1, TG_UNAVAILABLE, "HTTP 503"},
    {302, NULL, NULL, -1, TG_PROTOCOL, "redirect"},
};

static void
sso_url_answer_errors_map_like_every_parser(void **state)
{
    tg_config_t *cfg = looker_config();
    tg_diag_t diag;
    char *url;
    size_t i;
    tg_err_t err;

    (void) state;
    for (i = 0; i < sizeof(bad_answers) / sizeof(bad_answers[0]); i++) {
        const answer_case_t *a = &bad_answers[i];
        url = (char *) "untouched";
        err = parse_answer(cfg, a->status, a->content_type, a->body,
                           a->retry_after, &url, &diag);
        if (err != a->err || strstr(diag.message, a->message) == NULL) {
            fail_msg("answer %zu: %s \"%s\", want %s \"...%s...\"", i,
                     tg_err_name(err), diag.message, tg_err_name(a->err),
                     a->message);
        }
        assert_null(url);
        assert_int_equal(diag.http_status, a->status);
        /* The single-use URL is never quoted, whatever went wrong. */
        assert_null(strstr(diag.message, "SeCrEtSiGnAtUrE"));
    }
    /* 422 keeps the field errors; 429 keeps Retry-After. */
    url = NULL;
    parse_answer(cfg, 422, "application/json", bad_answers[14].body, -1, &url,
                 &diag);
    assert_int_equal(diag.n_fields, 1);
    assert_string_equal(diag.fields[0].field, "target_url");
    assert_string_equal(diag.fields[0].code, "missing");
    parse_answer(cfg, 429, "application/json", "{}", 30, &url, &diag);
    assert_int_equal(diag.retry_after, 30);
    tg_config_free(cfg);
}

static void
sso_url_answer_is_size_checked_and_looker_only(void **state)
{
    tg_config_t *cfg = looker_config();
    tg_diag_t diag;
    char *body, *url = NULL;
    size_t n = 17000, i;

    (void) state;
    /* A URL longer than 16 KiB inside a body that fits the size cap. */
    assert_int_equal(
        tg_config_set(cfg, "max_response_bytes", "65536", "test", NULL), TG_OK);
    body = malloc(n + 32);
    assert_non_null(body);
    i = (size_t) snprintf(body, n + 32, "{\"url\":\"https://x/");
    memset(body + i, 'a', n - i);
    memcpy(body + n, "\"}", 3);
    assert_int_equal(
        parse_answer(cfg, 200, "application/json", body, -1, &url, &diag),
        TG_PROTOCOL);
    assert_contains(diag.message, "longer than 16384 bytes");
    assert_null(url);
    /* A body above max_response_bytes is refused before decoding. */
    assert_int_equal(
        tg_config_set(cfg, "max_response_bytes", "1024", "test", NULL), TG_OK);
    assert_int_equal(
        parse_answer(cfg, 200, "application/json", body, -1, &url, &diag),
        TG_PROTOCOL);
    assert_contains(diag.message, "larger than 1024 bytes");
    free(body);
    /* insight has no such call; a NULL out is refused. */
    assert_int_equal(tg_config_set(cfg, "api", "insight", "test", NULL), TG_OK);
    assert_int_equal(parse_answer(cfg, 200, "application/json",
                                  "{\"url\":\"" SERVER_URL "\"}", -1, &url,
                                  &diag),
                     TG_INPUT);
    assert_contains(diag.message, "not supported by the insight API");
    assert_null(url);
    assert_int_equal(
        parse_answer(cfg, 200, "application/json", "{}", -1, NULL, &diag),
        TG_INPUT);
    tg_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hmac_sha1_base64_matches_rfc2202),
        cmocka_unit_test(vector1_url_and_string_to_sign_byte_for_byte),
        cmocka_unit_test(vector2_leaves_out_the_optional_lines_and_parameters),
        cmocka_unit_test(string_to_sign_is_lf_joined_without_trailing_lf_or_cr),
        cmocka_unit_test(every_signed_line_changes_the_signature),
        cmocka_unit_test(unsigned_parameters_leave_the_signature_alone),
        cmocka_unit_test(non_ascii_names_ampersand_plus_and_space_are_encoded),
        cmocka_unit_test(embed_path_with_its_own_query_is_one_component),
        cmocka_unit_test(empty_optional_values_are_sent_and_signed),
        cmocka_unit_test(user_attributes_with_quotes_backslash_slash_and_utf8),
        cmocka_unit_test(every_check_error_names_its_parameter),
        cmocka_unit_test(limits_are_inclusive_and_loopback_hosts_may_use_http),
        cmocka_unit_test(field_and_path_limits_are_the_public_macros),
        cmocka_unit_test(host_must_be_spelled_as_browsers_send_it),
        cmocka_unit_test(the_url_has_a_length_cap_that_the_check_enforces),
        cmocka_unit_test(the_secret_must_be_given_and_is_never_quoted),
        cmocka_unit_test(fresh_nonces_are_32_hex_and_differ),
        cmocka_unit_test(time_zero_means_now),
        cmocka_unit_test(params_init_sets_looker_defaults),
        cmocka_unit_test(
            sso_url_request_carries_the_grants_as_embed_sso_params),
        cmocka_unit_test(
            sso_url_request_is_refused_before_sending_anything_bad),
        cmocka_unit_test(sso_url_answer_200_gives_the_url),
        cmocka_unit_test(sso_url_answer_errors_map_like_every_parser),
        cmocka_unit_test(sso_url_answer_is_size_checked_and_looker_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
