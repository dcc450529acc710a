/* SPDX-License-Identifier: MIT */
/*
 * pam_driver.c - a small PAM application for the integration tests.
 *
 *   pam_driver [--confdir DIR] --service NAME (--user USER | --no-user)
 *              [--steps auth,acct,open,close,setcred,chauthtok]
 *              [--repeat N] [--silent] [--authtok] [--show-env-token]
 *              [--fsize-zero]
 *
 * It runs the steps through a real libpam: pam_start_confdir() with the
 * service files in DIR (Linux-PAM >= 1.5.2, no /etc/pam.d involved), or
 * pam_start() with the system's /etc/pam.d when --confdir is not given.
 * The whole cycle, pam_start ... pam_end, runs N times in one process
 * (--repeat, for the leak test); the last cycle is reported.
 *
 * The conversation answers echo-off and echo-on prompts with the password:
 * $TG_PAM_PASSWORD, else all of standard input with one trailing newline
 * removed (so passwords with embedded newlines, like sshd's fake one, get
 * through; empty input means "no password": prompts fail with
 * PAM_CONV_ERR; a lone newline is the empty password).  With --authtok the
 * first prompt is answered with $TG_PAM_AUTHTOK instead: an application
 * cannot set PAM_AUTHTOK itself (pam_set_item refuses it outside modules),
 * so tests stack "auth optional pam_exec.so expose_authtok /bin/cat" first,
 * which asks once and stores the answer as PAM_AUTHTOK for the next module.
 * With --no-user, pam_start gets a NULL user and echo-on prompts (the
 * "login:" of pam_get_user) are answered with the empty string.
 *
 * --fsize-zero sets RLIMIT_FSIZE to 0 (with SIGXFSZ ignored, so a write
 * that would grow a regular file fails with EFBIG instead of killing the
 * process), as "ulimit -f 0" does for a caller of su: the module's files
 * cannot be written.  The syslog shim's log file cannot grow either.
 *
 * Output: one JSON line on standard output,
 *   {"steps":[{"step":"auth","rc":0,"name":"Success"},...],
 *    "env":{...pam_getenvlist...},"prompts":[{"style":..,"msg":..}],
 *    "messages":[{"style":"error"|"info","msg":...}],"cycles":N}
 * The password is never printed; a TOKENGATE_TOKEN value in the PAM
 * environment is replaced by its length unless --show-env-token.  Exit
 * status 0 when the steps ran (their codes are in the JSON), 2 on bad
 * usage, 3 when pam_start itself failed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <security/pam_appl.h>

/* Largest password read from standard input: well above the module's
 * 8 KiB limit, so "too long" reaches the module. */
#define DRIVER_INPUT_MAX (1024 * 1024)
/* Steps and recorded messages kept per cycle. */
#define DRIVER_STEPS_MAX 16
#define DRIVER_MSGS_MAX 64

enum step_kind {
    STEP_AUTH,
    STEP_ACCT,
    STEP_OPEN,
    STEP_CLOSE,
    STEP_SETCRED,
    STEP_DELCRED,
    STEP_CHAUTHTOK
};

typedef struct {
    const char *name;
    enum step_kind kind;
} step_name_t;

typedef struct {
    int style;
    char *msg;
} record_t;

typedef struct {
    const char *password; /* NULL: no answer (PAM_CONV_ERR) */
    const char *authtok;  /* first answer with --authtok */
    int use_authtok;
    int no_user;
    int answered; /* prompts answered in this cycle */
    record_t prompts[DRIVER_MSGS_MAX];
    size_t nprompts;
    record_t messages[DRIVER_MSGS_MAX];
    size_t nmessages;
} conv_state_t;

typedef struct {
    enum step_kind kind;
    const char *name;
    int rc;
} step_result_t;

static int conv(int num_msg, const struct pam_message **msg,
                struct pam_response **resp, void *appdata);
static void record(record_t *list, size_t *n, int style, const char *text);
static void records_free(record_t *list, size_t *n);
static char *read_password(void);
static int parse_steps(const char *spec, step_result_t *steps, size_t *n);
static int run_step(pam_handle_t *pamh, enum step_kind kind, int flags);
static void json_string(const char *s);
static const char *style_name(int style);
static void print_result(pam_handle_t *pamh, const step_result_t *steps,
                         size_t nsteps, const conv_state_t *st, long cycles,
                         int show_token);
static void usage(void);

static const step_name_t step_names[] = {
    {"auth", STEP_AUTH},           {"acct", STEP_ACCT},
    {"open", STEP_OPEN},           {"close", STEP_CLOSE},
    {"setcred", STEP_SETCRED},     {"delcred", STEP_DELCRED},
    {"chauthtok", STEP_CHAUTHTOK},
};

/* ---------------------------------------------------------------------- */
/* The conversation                                                       */
/* ---------------------------------------------------------------------- */

static void
record(record_t *list, size_t *n, int style, const char *text)
{
    if (*n >= DRIVER_MSGS_MAX) {
        return;
    }
    list[*n].style = style;
    list[*n].msg = strdup(text != NULL ? text : "");
    if (list[*n].msg != NULL) {
        (*n)++;
    }
}

static void
records_free(record_t *list, size_t *n)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        free(list[i].msg);
        list[i].msg = NULL;
    }
    *n = 0;
}

static int
conv(int num_msg, const struct pam_message **msg, struct pam_response **resp,
     void *appdata)
{
    conv_state_t *st = appdata;
    struct pam_response *out;
    int i;

    if (num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG) {
        return PAM_CONV_ERR;
    }
    out = calloc((size_t) num_msg, sizeof(*out));
    if (out == NULL) {
        return PAM_BUF_ERR;
    }
    for (i = 0; i < num_msg; i++) {
        const char *answer = NULL;

        switch (msg[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
        case PAM_PROMPT_ECHO_ON:
            record(st->prompts, &st->nprompts, msg[i]->msg_style, msg[i]->msg);
            if (st->no_user && msg[i]->msg_style == PAM_PROMPT_ECHO_ON) {
                answer = "";
            } else if (st->use_authtok && st->answered == 0) {
                answer = st->authtok;
            } else {
                answer = st->password;
            }
            if (answer == NULL) {
                goto fail;
            }
            out[i].resp = strdup(answer);
            if (out[i].resp == NULL) {
                goto fail;
            }
            st->answered++;
            break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO:
            record(st->messages, &st->nmessages, msg[i]->msg_style,
                   msg[i]->msg);
            break;
        default:
            goto fail;
        }
    }
    *resp = out;
    return PAM_SUCCESS;
fail:
    for (i = 0; i < num_msg; i++) {
        if (out[i].resp != NULL) {
            explicit_bzero(out[i].resp, strlen(out[i].resp));
            free(out[i].resp);
        }
    }
    free(out);
    return PAM_CONV_ERR;
}

/* ---------------------------------------------------------------------- */
/* Input and steps                                                        */
/* ---------------------------------------------------------------------- */

/* All of standard input, minus one trailing newline; NULL when empty. */
static char *
read_password(void)
{
    char *buf = malloc(DRIVER_INPUT_MAX + 1);
    size_t len = 0;

    if (buf == NULL) {
        return NULL;
    }
    while (len < DRIVER_INPUT_MAX) {
        ssize_t n = read(STDIN_FILENO, buf + len, DRIVER_INPUT_MAX - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t) n;
    }
    if (len == 0) {
        free(buf);
        return NULL;
    }
    if (buf[len - 1] == '\n') {
        len--;
    }
    buf[len] = '\0';
    return buf;
}

static int
parse_steps(const char *spec, step_result_t *steps, size_t *n)
{
    const char *p = spec;

    *n = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        size_t i;
        int found = 0;

        for (i = 0; i < sizeof(step_names) / sizeof(step_names[0]); i++) {
            if (strlen(step_names[i].name) == len &&
                strncmp(step_names[i].name, p, len) == 0) {
                if (*n >= DRIVER_STEPS_MAX) {
                    return -1;
                }
                steps[*n].kind = step_names[i].kind;
                steps[*n].name = step_names[i].name;
                steps[*n].rc = -1;
                (*n)++;
                found = 1;
                break;
            }
        }
        if (!found) {
            return -1;
        }
        p += len;
        if (*p == ',') {
            p++;
        }
    }
    return *n > 0 ? 0 : -1;
}

static int
run_step(pam_handle_t *pamh, enum step_kind kind, int flags)
{
    switch (kind) {
    case STEP_AUTH:
        return pam_authenticate(pamh, flags);
    case STEP_ACCT:
        return pam_acct_mgmt(pamh, flags);
    case STEP_OPEN:
        return pam_open_session(pamh, flags);
    case STEP_CLOSE:
        return pam_close_session(pamh, flags);
    case STEP_SETCRED:
        return pam_setcred(pamh, flags | PAM_ESTABLISH_CRED);
    case STEP_DELCRED:
        return pam_setcred(pamh, flags | PAM_DELETE_CRED);
    case STEP_CHAUTHTOK:
        return pam_chauthtok(pamh, flags);
    }
    return PAM_ABORT;
}

/* ---------------------------------------------------------------------- */
/* Output                                                                 */
/* ---------------------------------------------------------------------- */

static void
json_string(const char *s)
{
    const unsigned char *p = (const unsigned char *) s;

    putchar('"');
    for (; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            printf("\\u%04x", *p);
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

static const char *
style_name(int style)
{
    switch (style) {
    case PAM_PROMPT_ECHO_OFF:
        return "echo_off";
    case PAM_PROMPT_ECHO_ON:
        return "echo_on";
    case PAM_ERROR_MSG:
        return "error";
    case PAM_TEXT_INFO:
        return "info";
    }
    return "other";
}

static void
print_result(pam_handle_t *pamh, const step_result_t *steps, size_t nsteps,
             const conv_state_t *st, long cycles, int show_token)
{
    char **env = pamh != NULL ? pam_getenvlist(pamh) : NULL;
    size_t i;
    int first = 1;

    printf("{\"steps\":[");
    for (i = 0; i < nsteps; i++) {
        printf("%s{\"step\":\"%s\",\"rc\":%d,\"name\":", i > 0 ? "," : "",
               steps[i].name, steps[i].rc);
        json_string(pam_strerror(pamh, steps[i].rc));
        putchar('}');
    }
    printf("],\"env\":{");
    for (i = 0; env != NULL && env[i] != NULL; i++) {
        char *eq = strchr(env[i], '=');

        if (eq != NULL) {
            *eq = '\0';
            printf("%s", first ? "" : ",");
            first = 0;
            json_string(env[i]);
            putchar(':');
            if (!show_token && strcmp(env[i], "TOKENGATE_TOKEN") == 0) {
                printf("%zu", strlen(eq + 1));
            } else {
                json_string(eq + 1);
            }
            *eq = '=';
        }
        explicit_bzero(env[i], strlen(env[i]));
        free(env[i]);
    }
    free(env);
    printf("},\"prompts\":[");
    for (i = 0; i < st->nprompts; i++) {
        printf("%s{\"style\":\"%s\",\"msg\":", i > 0 ? "," : "",
               style_name(st->prompts[i].style));
        json_string(st->prompts[i].msg);
        putchar('}');
    }
    printf("],\"messages\":[");
    for (i = 0; i < st->nmessages; i++) {
        printf("%s{\"style\":\"%s\",\"msg\":", i > 0 ? "," : "",
               style_name(st->messages[i].style));
        json_string(st->messages[i].msg);
        putchar('}');
    }
    printf("],\"cycles\":%ld}\n", cycles);
    fflush(stdout);
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: pam_driver [--confdir DIR] --service NAME "
            "(--user USER | --no-user)\n"
            "                  [--steps auth,acct,open,close,setcred,"
            "delcred,chauthtok]\n"
            "                  [--repeat N] [--silent] [--authtok] "
            "[--show-env-token] [--fsize-zero]\n"
            "The password comes from $TG_PAM_PASSWORD or standard input.\n");
}

int
main(int argc, char **argv)
{
    const char *confdir = NULL, *service = NULL, *user = NULL;
    const char *steps_spec = "auth";
    step_result_t steps[DRIVER_STEPS_MAX];
    size_t nsteps = 0, i;
    conv_state_t st;
    struct pam_conv pconv;
    char *input = NULL;
    long repeat = 1, cycle;
    int show_token = 0, flags = 0, have_user = 0, status = 0;
    int fsize_zero = 0;

    memset(&st, 0, sizeof(st));
    for (i = 1; i < (size_t) argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < (size_t) argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--confdir") == 0 && v != NULL) {
            confdir = v;
            i++;
        } else if (strcmp(a, "--service") == 0 && v != NULL) {
            service = v;
            i++;
        } else if (strcmp(a, "--user") == 0 && v != NULL) {
            user = v;
            have_user = 1;
            i++;
        } else if (strcmp(a, "--steps") == 0 && v != NULL) {
            steps_spec = v;
            i++;
        } else if (strcmp(a, "--repeat") == 0 && v != NULL) {
            char *end = NULL;
            repeat = strtol(v, &end, 10);
            if (end == v || *end != '\0' || repeat < 1 || repeat > 1000000) {
                usage();
                return 2;
            }
            i++;
        } else if (strcmp(a, "--no-user") == 0) {
            st.no_user = 1;
        } else if (strcmp(a, "--silent") == 0) {
            flags |= PAM_SILENT;
        } else if (strcmp(a, "--authtok") == 0) {
            st.use_authtok = 1;
        } else if (strcmp(a, "--show-env-token") == 0) {
            show_token = 1;
        } else if (strcmp(a, "--fsize-zero") == 0) {
            fsize_zero = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (service == NULL || have_user == st.no_user ||
        parse_steps(steps_spec, steps, &nsteps) != 0) {
        usage();
        return 2;
    }
    st.password = getenv("TG_PAM_PASSWORD");
    if (st.password == NULL) {
        input = read_password();
        st.password = input;
    }
    if (st.use_authtok) {
        st.authtok = getenv("TG_PAM_AUTHTOK");
        if (st.authtok == NULL) {
            st.authtok = st.password;
        }
    }
    pconv.conv = conv;
    pconv.appdata_ptr = &st;
    if (fsize_zero) {
        struct rlimit rl = {0, 0};
        if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR ||
            setrlimit(RLIMIT_FSIZE, &rl) != 0) {
            fprintf(stderr, "pam_driver: --fsize-zero: %s\n", strerror(errno));
            return 2;
        }
    }

    for (cycle = 1; cycle <= repeat; cycle++) {
        pam_handle_t *pamh = NULL;
        int rc, last = PAM_SUCCESS;

        records_free(st.prompts, &st.nprompts);
        records_free(st.messages, &st.nmessages);
        st.answered = 0;
        if (confdir != NULL) {
            rc = pam_start_confdir(service, st.no_user ? NULL : user, &pconv,
                                   confdir, &pamh);
        } else {
            rc = pam_start(service, st.no_user ? NULL : user, &pconv, &pamh);
        }
        if (rc != PAM_SUCCESS) {
            printf("{\"error\":\"pam_start\",\"rc\":%d,\"name\":", rc);
            json_string(pam_strerror(pamh, rc));
            printf(",\"cycles\":%ld}\n", cycle);
            status = 3;
            break;
        }
        for (i = 0; i < nsteps; i++) {
            steps[i].rc = run_step(pamh, steps[i].kind, flags);
            last = steps[i].rc;
        }
        if (cycle == repeat) {
            print_result(pamh, steps, nsteps, &st, repeat, show_token);
        }
        pam_end(pamh, last);
    }
    records_free(st.prompts, &st.nprompts);
    records_free(st.messages, &st.nmessages);
    if (input != NULL) {
        explicit_bzero(input, strlen(input));
        free(input);
    }
    return status;
}
