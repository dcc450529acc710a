/* SPDX-License-Identifier: MIT */
/*
 * test_hmac.c - the nginx module's HMAC-SHA-256 from keyed SHA-256 states
 * (nginx_module/ngx_http_tokengate_hmac.c, built here from the same source
 * as in the module): the keys of the cache, of coalescing and of the
 * fleet's shared cache are these MACs, so they must be HMAC-SHA-256 to the
 * byte (the shared cache's keys are compared across nodes and versions).
 * Checked against RFC 4231's vectors and against OpenSSL's HMAC() (the
 * EVP_MAC "HMAC" the module used before) for keys and messages of every
 * length around SHA-256's 64-byte block, fed in pieces as the module does.
 * The states are SHA256_CTX structs copied by assignment: a key must be
 * wiped when freed, and a context must carry nothing from one MAC (or one
 * key) to the next.  Each test is named by what it protects.
 *
 * The source is included, not built as an object of its own: an object
 * under nginx_module/ in the build tree would make `make dist` take that
 * build directory for the source one (EXTRA_DIST names nginx_module/).
 * First, for its OPENSSL_API_COMPAT to come before any OpenSSL header.
 */
#include "ngx_http_tokengate_hmac.c"

#include <openssl/hmac.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The module's longest message: the 8-byte length, a token of
 * TG_TOKEN_MAX (4096) bytes, the Basic flag and a 32-byte fingerprint. */
#define MSG_MAX (8 + 4096 + 1 + 32)

/* Deterministic bytes (xorshift32), so a failure can be reproduced. */
static void
fill(unsigned char *p, size_t len, uint32_t seed)
{
    size_t i;
    uint32_t x = seed * 2654435761u + 1;

    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char) x;
    }
}

static void
from_hex(const char *hex, unsigned char *out)
{
    size_t i;
    unsigned int b;

    for (i = 0; hex[2 * i] != '\0'; i++) {
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (unsigned char) b;
    }
}

/* The MAC of msg with hk in ctx, the message fed in parts cut at cut1 and
 * cut2 (cut1 <= cut2 <= len), as the module feeds length, token, tail. */
static void
mac_in_parts(ngx_http_tokengate_hmac_t *ctx,
             const ngx_http_tokengate_hmac_key_t *hk, const unsigned char *msg,
             size_t len, size_t cut1, size_t cut2, unsigned char *out)
{
    ngx_http_tokengate_hmac_start(ctx, hk);
    assert_int_equal(ngx_http_tokengate_hmac_update(ctx, msg, cut1), 0);
    assert_int_equal(
        ngx_http_tokengate_hmac_update(ctx, msg + cut1, cut2 - cut1), 0);
    assert_int_equal(
        ngx_http_tokengate_hmac_update(ctx, msg + cut2, len - cut2), 0);
    assert_int_equal(ngx_http_tokengate_hmac_final(ctx, hk, out), 0);
}

/* Whether all of p's len bytes are zero. */
static int
all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < len; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static void
openssl_hmac(const unsigned char *key, size_t key_len, const unsigned char *msg,
             size_t len, unsigned char *out)
{
    unsigned int n = 0;

    assert_non_null(HMAC(EVP_sha256(), key, (int) key_len, msg, len, out, &n));
    assert_int_equal(n, NGX_HTTP_TOKENGATE_HMAC_LEN);
}

static void
rfc4231_vectors_match(void **state)
{
    static const struct {
        const char *key_hex;
        const char *data;
        const char *mac_hex;
    } cases[] = {
        /* test case 1 */
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        /* test case 2 */
        {"4a656665", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    };
    unsigned char key[64], mac[32], want[32];
    size_t i, key_len;
    ngx_http_tokengate_hmac_t ctx;
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        key_len = strlen(cases[i].key_hex) / 2;
        from_hex(cases[i].key_hex, key);
        from_hex(cases[i].mac_hex, want);
        assert_int_equal(ngx_http_tokengate_hmac_key_init(&hk, key, key_len),
                         0);
        mac_in_parts(&ctx, &hk, (const unsigned char *) cases[i].data,
                     strlen(cases[i].data), 0, 0, mac);
        assert_memory_equal(mac, want, sizeof(want));
        ngx_http_tokengate_hmac_key_free(&hk);
    }
}

static void
matches_openssl_hmac_for_keys_and_messages_around_the_block(void **state)
{
    static const size_t key_lens[] = {0, 1, 20, 32, 63, 64};
    static const size_t msg_lens[] = {0,   1,   41,  55,   56,     63,
                                      64,  65,  81,  119,  120,    127,
                                      128, 161, 200, 1000, MSG_MAX};
    static unsigned char msg[MSG_MAX];
    unsigned char key[64], mac[32], want[32];
    size_t k, m, len, cut1, cut2;
    ngx_http_tokengate_hmac_t ctx;
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    for (k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++) {
        fill(key, key_lens[k], (uint32_t) k + 1);
        assert_int_equal(
            ngx_http_tokengate_hmac_key_init(&hk, key, key_lens[k]), 0);

        for (m = 0; m < sizeof(msg_lens) / sizeof(msg_lens[0]); m++) {
            len = msg_lens[m];
            fill(msg, len, (uint32_t) (100 * k + m + 7));
            openssl_hmac(key, key_lens[k], msg, len, want);

            /* whole, and in the module's three parts (8, token, 33) */
            mac_in_parts(&ctx, &hk, msg, len, 0, len, mac);
            assert_memory_equal(mac, want, sizeof(want));

            cut1 = len < 8 ? len : 8;
            cut2 = len < cut1 + 33 ? cut1 : len - 33;
            mac_in_parts(&ctx, &hk, msg, len, cut1, cut2, mac);
            assert_memory_equal(mac, want, sizeof(want));
        }
        ngx_http_tokengate_hmac_key_free(&hk);
    }
}

static void
one_context_serves_keys_in_turn_without_carrying_state(void **state)
{
    unsigned char key_a[32], key_b[32], msg[120];
    unsigned char a1[32], b1[32], a2[32], want_a[32], want_b[32];
    ngx_http_tokengate_hmac_t ctx;
    ngx_http_tokengate_hmac_key_t ha, hb;

    (void) state;
    fill(key_a, sizeof(key_a), 11);
    fill(key_b, sizeof(key_b), 12);
    fill(msg, sizeof(msg), 13);
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&ha, key_a, 32), 0);
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&hb, key_b, 32), 0);
    openssl_hmac(key_a, 32, msg, sizeof(msg), want_a);
    openssl_hmac(key_b, 32, msg, sizeof(msg), want_b);

    mac_in_parts(&ctx, &ha, msg, sizeof(msg), 8, 87, a1);
    mac_in_parts(&ctx, &hb, msg, sizeof(msg), 8, 87, b1);
    mac_in_parts(&ctx, &ha, msg, sizeof(msg), 8, 87, a2);

    assert_memory_equal(a1, want_a, 32);
    assert_memory_equal(b1, want_b, 32);
    assert_memory_equal(a2, want_a, 32);
    assert_memory_not_equal(a1, b1, 32);

    ngx_http_tokengate_hmac_key_free(&ha);
    ngx_http_tokengate_hmac_key_free(&hb);
}

static void
a_key_longer_than_a_block_is_refused_and_holds_nothing(void **state)
{
    unsigned char key[65];
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    fill(key, sizeof(key), 21);
    memset(&hk, 0xa5, sizeof(hk));
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&hk, key, sizeof(key)),
                     -1);
    assert_true(all_zero(&hk, sizeof(hk)));
    ngx_http_tokengate_hmac_key_free(&hk);
}

static void
a_freed_key_is_wiped(void **state)
{
    unsigned char key[32];
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    fill(key, sizeof(key), 31);
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&hk, key, sizeof(key)),
                     0);
    assert_false(all_zero(&hk.inner, sizeof(hk.inner)));
    assert_false(all_zero(&hk.outer, sizeof(hk.outer)));
    ngx_http_tokengate_hmac_key_free(&hk);
    assert_true(all_zero(&hk, sizeof(hk)));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc4231_vectors_match),
        cmocka_unit_test(
            matches_openssl_hmac_for_keys_and_messages_around_the_block),
        cmocka_unit_test(
            one_context_serves_keys_in_turn_without_carrying_state),
        cmocka_unit_test(
            a_key_longer_than_a_block_is_refused_and_holds_nothing),
        cmocka_unit_test(a_freed_key_is_wiped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
