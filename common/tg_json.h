/* SPDX-License-Identifier: MIT */
/*
 * tg_json.h - the one JSON decoder of libtokengate (json.c), for every
 * answer and file we read: protocol.c, the CLI's token file and the PAM
 * module's state files.  Not installed.  A separate header (not
 * tg_internal.h) because cli/ and pam_module/ use it too.
 *
 * It builds jansson values, so callers read them with jansson's API and
 * there is one JSON model; jansson still writes JSON (json_dumps etc.).
 */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>

#include <jansson.h>

/* jansson's JSON_PARSER_MAX_DEPTH (jansson_config.h): a value, scalars
 * included, nested deeper than this is refused.  The decoder's own limit
 * when called with depth_max <= 0. */
#define TG__JSON_DEPTH_JANSSON 2048

/*
 * Decode buf[0..len) exactly as jansson 2.14's
 * json_loadb(buf, len, JSON_REJECT_DUPLICATES | flags, error) does, but in
 * one pass with no call per byte: the same inputs are accepted and refused,
 * an accepted one gives a json_equal() value, and a refused one the same
 * json_error_code().  flags: 0 or JSON_DECODE_ANY (JSON_REJECT_DUPLICATES
 * may be passed and is implied; any other flag is refused as
 * json_error_invalid_argument).
 *
 * depth_max: containers ([ and {) nested deeper than this are refused as
 * json_error_stack_overflow, as soon as the first one too many opens
 * (nothing deeper is read); <= 0 or above TG__JSON_DEPTH_JANSSON means
 * jansson's own limit.
 *
 * error (may be NULL) is filled like jansson's: text (short words of ours,
 * never quoting the input, so safe for answers that hold a secret), the
 * code for json_error_code(), line, column and position of the fault.
 * Returns a new reference, NULL on failure.  Any scratch copy of the
 * input's strings is wiped before it is freed (tokens are in these bodies).
 *
 * One difference, chosen: jansson 2.14 skips a raw NUL byte that directly
 * follows a number or true/false/null (its lexer's unget loses it), so it
 * accepts "[1\0]"; this decoder refuses every raw NUL outside a string,
 * coded as jansson codes a raw NUL anywhere else (premature end of input,
 * or end of input expected after the top value).
 */
json_t *tg__json_decode(const char *buf, size_t len, size_t flags,
                        int depth_max, json_error_t *error);

#endif /* TG_JSON_H */
