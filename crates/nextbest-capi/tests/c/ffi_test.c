/*
 * The C ABI, exercised from C: every function, every error path, buffers
 * and threads. Run by tests/ffi.rs from the repository root:
 *
 *   cargo build --lib
 *   gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/ffi_test.c \
 *       target/debug/libnextbest.a -lpthread -ldl -lm -o ffi_test && ./ffi_test
 *
 * The same file also compiles as C++ (g++ -x c++ -std=c++17), which proves
 * the header is C++-clean. Exits 1 after printing every failed check.
 */
#define _POSIX_C_SOURCE 200809L

#include "nextbest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MINI "tests/fixtures/mini"
#define MINI_V2 "tests/fixtures/mini_v2"
#define BROKEN "tests/fixtures/broken"
#define GOLD_REQUEST                                                           \
    "{\"customer_id\":\"C1\",\"channel\":\"call_center\",\"context\":"        \
    "{\"age\":42,\"income\":90000,\"segment\":\"gold\"}}"
#define GOLD_ACCEPTED                                                          \
    "{\"customer_id\":\"C1\",\"action\":\"CARD_GOLD\",\"channel\":"           \
    "\"call_center\",\"outcome\":\"accepted\"}"

static int failures = 0;

static void check(int ok, const char *what, const char *file, int line) {
    if (!ok) {
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
        failures++;
    }
}
#define CHECK(cond) check((cond) ? 1 : 0, #cond, __FILE__, __LINE__)

static const uint8_t *bytes(const char *s) { return (const uint8_t *)s; }

static int is_empty(const nb_buf *b) { return b->ptr == NULL && b->len == 0 && b->cap == 0; }

/* A filled buffer: non-empty, NUL right after the content, and `needle` in it. */
static int has(const nb_buf *b, const char *needle) {
    return b->ptr != NULL && b->len > 0 && b->cap > b->len && b->ptr[b->len] == 0 &&
           strlen((const char *)b->ptr) == b->len && strstr((const char *)b->ptr, needle) != NULL;
}

static int count(const nb_buf *b, const char *needle) {
    int n = 0;
    const char *p = b->ptr ? (const char *)b->ptr : "";
    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

/* The integer after `"key":` in a JSON buffer, or -1. */
static long json_int(const nb_buf *b, const char *key) {
    char pattern[64];
    const char *p;
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    p = b->ptr ? strstr((const char *)b->ptr, pattern) : NULL;
    return p ? strtol(p + strlen(pattern), NULL, 10) : -1;
}

/* The call returned `want`; on failure, err names it and the code. */
static void expect_status(nb_status got, nb_status want, const nb_buf *err, const char *what,
                          const char *file, int line) {
    char msg[512];
    if (got != want) {
        snprintf(msg, sizeof msg, "%s: status %d (%s), expected %d (%s); err: %s", what, (int)got,
                 nb_status_str(got), (int)want, nb_status_str(want),
                 err && err->ptr ? (const char *)err->ptr : "(none)");
        check(0, msg, file, line);
        return;
    }
    if (err == NULL) return;
    if (want == NB_OK) {
        snprintf(msg, sizeof msg, "%s: err is empty on success", what);
        check(is_empty(err), msg, file, line);
    } else {
        char code[32];
        snprintf(code, sizeof code, "\"code\":%d,", (int)want);
        snprintf(msg, sizeof msg, "%s: err JSON has the code and status name", what);
        check(has(err, "\"status\":\"NB_ERR_") && has(err, code) && has(err, "\"message\":\"") &&
                  has(err, "\"errors\":["),
              msg, file, line);
    }
}
#define EXPECT(call, want, err) expect_status((call), (want), (err), #call, __FILE__, __LINE__)

static nb_engine *open_engine(const char *config) {
    nb_engine *engine = NULL;
    nb_buf err = {NULL, 0, 0};
    EXPECT(nb_engine_open(bytes(config), strlen(config), &engine, &err), NB_OK, &err);
    nb_buf_free(&err);
    return engine;
}

static nb_status decide(const nb_engine *engine, const char *request, nb_buf *out, nb_buf *err) {
    return nb_decide(engine, bytes(request), strlen(request), out, err);
}

static nb_status load(const nb_engine *engine, const char *dir, nb_buf *version, nb_buf *err) {
    return nb_engine_load_rules(engine, bytes(dir), strlen(dir), version, err);
}

static void test_versions_and_statuses(void) {
    const nb_status all[] = {
        NB_OK, NB_ERR_NULL_ARGUMENT, NB_ERR_INVALID_UTF8, NB_ERR_INVALID_JSON,
        NB_ERR_INVALID_REQUEST, NB_ERR_UNKNOWN_CHANNEL, NB_ERR_INVALID_RULES,
        NB_ERR_INVALID_CONFIG, NB_ERR_IO, NB_ERR_NO_PREVIOUS_VERSION, NB_ERR_SCRIPT,
        NB_ERR_PANIC, NB_ERR_INVALID_CONTEXT, NB_ERR_INTERNAL,
    };
    size_t n = sizeof all / sizeof all[0], i, j;
    const char *v = nb_version();

    CHECK(nb_abi_version() == 1);
    CHECK(v != NULL && strlen(v) >= 5 && strchr(v, '.') != NULL);
    CHECK(v == nb_version()); /* static */
    CHECK(NB_OK == 0);
    for (i = 0; i < n; i++) {
        const char *s = nb_status_str(all[i]);
        CHECK((int)all[i] == (int)i);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown status") != 0);
        for (j = 0; j < i; j++) CHECK(strcmp(s, nb_status_str(all[j])) != 0);
    }
    CHECK(strcmp(nb_status_str(NB_OK), "ok") == 0);
    CHECK(strcmp(nb_status_str(9999), "unknown status") == 0);
    CHECK(strcmp(nb_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(nb_status_str((int32_t)n), "unknown status") == 0);
    CHECK(strcmp(nb_status_str(INT32_MIN), "unknown status") == 0);
}

static void test_buffers(void) {
    nb_buf empty = {NULL, 0, 0};
    nb_buf out = {NULL, 0, 0};
    nb_engine *engine = open_engine("{\"rules_dir\":\"" MINI "\"}");

    nb_buf_free(NULL);
    nb_buf_free(&empty);
    CHECK(is_empty(&empty));
    EXPECT(nb_engine_stats(engine, &out), NB_OK, NULL);
    CHECK(has(&out, "\"current\""));
    nb_buf_free(&out);
    CHECK(is_empty(&out));
    nb_buf_free(&out); /* freeing twice is harmless: the first left it empty */
    CHECK(is_empty(&out));
    nb_engine_free(engine);
    nb_engine_free(NULL);
}

static void test_open(void) {
    nb_engine *engine = (nb_engine *)&failures; /* must be overwritten with NULL */
    nb_buf err = {NULL, 0, 0};
    const char *ok = "{\"rules_dir\":\"" MINI "\"}";
    const char *bad_utf8 = "{\"rules_dir\":\"\xff\xfe\"}";
    const char *bad_json = "{\"rules_dir\":";
    const char *unknown_field = "{\"rules_dir\":\"" MINI "\",\"colour\":\"blue\"}";
    const char *missing = "{\"rules_dir\":\"tests/fixtures/no_such_dir\"}";
    const char *broken = "{\"rules_dir\":\"" BROKEN "\"}";

    EXPECT(nb_engine_open(NULL, 0, &engine, &err), NB_ERR_NULL_ARGUMENT, &err);
    CHECK(engine == NULL);
    CHECK(has(&err, "config"));
    nb_buf_free(&err);
    EXPECT(nb_engine_open(bytes(ok), strlen(ok), NULL, &err), NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);
    EXPECT(nb_engine_open(NULL, 0, NULL, NULL), NB_ERR_NULL_ARGUMENT, NULL);
    EXPECT(nb_engine_open(bytes(bad_utf8), strlen(bad_utf8), &engine, &err), NB_ERR_INVALID_UTF8,
           &err);
    CHECK(engine == NULL);
    nb_buf_free(&err);
    EXPECT(nb_engine_open(bytes(bad_json), strlen(bad_json), &engine, &err), NB_ERR_INVALID_JSON,
           &err);
    nb_buf_free(&err);
    EXPECT(nb_engine_open(bytes(unknown_field), strlen(unknown_field), &engine, &err),
           NB_ERR_INVALID_CONFIG, &err);
    CHECK(has(&err, "colour"));
    nb_buf_free(&err);
    EXPECT(nb_engine_open(bytes(missing), strlen(missing), &engine, &err), NB_ERR_IO, &err);
    CHECK(has(&err, "no_such_dir"));
    CHECK(has(&err, "\"location\":null"));
    nb_buf_free(&err);
    EXPECT(nb_engine_open(bytes(broken), strlen(broken), &engine, &err), NB_ERR_INVALID_RULES,
           &err);
    CHECK(engine == NULL);
    /* two errors, each with a location, and the first's location on top */
    CHECK(count(&err, "\"column\":") == 3);
    CHECK(has(&err, "\"location\":{\"file\":\"actions/bad.toml\",\"line\":3,\"column\":9}"));
    CHECK(has(&err, "actions/bad.toml"));
    nb_buf_free(&err);
    /* err may be NULL on failure and on success */
    EXPECT(nb_engine_open(bytes(broken), strlen(broken), &engine, NULL), NB_ERR_INVALID_RULES,
           NULL);
    EXPECT(nb_engine_open(bytes(ok), strlen(ok), &engine, NULL), NB_OK, NULL);
    CHECK(engine != NULL);
    nb_engine_free(engine);
}

static void test_decide(void) {
    nb_engine *engine = open_engine("{\"rules_dir\":\"" MINI "\"}");
    nb_buf out = {NULL, 0, 0};
    nb_buf err = {NULL, 0, 0};
    const char *bad_utf8 = "{\"customer_id\":\"\xc3\x28\",\"channel\":\"call_center\"}";

    EXPECT(decide(engine, GOLD_REQUEST, &out, &err), NB_OK, &err);
    CHECK(has(&out, "\"decision_id\":\""));
    CHECK(has(&out, "\"rank\":1,\"action\":\"CARD_BASIC\""));
    CHECK(has(&out, "\"rank\":2,\"action\":\"CARD_GOLD\""));
    CHECK(has(&out, "\"treatment\":\"Gold card\""));
    CHECK(has(&out, "\"version\":1"));
    nb_buf_free(&out);

    /* NULL out: decided and discarded; NULL err on success */
    EXPECT(decide(engine, GOLD_REQUEST, NULL, NULL), NB_OK, NULL);

    EXPECT(decide(NULL, GOLD_REQUEST, &out, &err), NB_ERR_NULL_ARGUMENT, &err);
    CHECK(is_empty(&out));
    CHECK(has(&err, "engine"));
    nb_buf_free(&err);
    EXPECT(nb_decide(engine, NULL, 0, &out, &err), NB_ERR_NULL_ARGUMENT, &err);
    CHECK(is_empty(&out));
    CHECK(has(&err, "request"));
    nb_buf_free(&err);
    EXPECT(nb_decide(engine, NULL, 10, NULL, NULL), NB_ERR_NULL_ARGUMENT, NULL);

    EXPECT(decide(engine, bad_utf8, &out, &err), NB_ERR_INVALID_UTF8, &err);
    CHECK(is_empty(&out));
    nb_buf_free(&err);
    EXPECT(decide(engine, "{\"customer_id\": \"C1\",", &out, &err), NB_ERR_INVALID_JSON, &err);
    CHECK(is_empty(&out));
    nb_buf_free(&err);
    EXPECT(nb_decide(engine, bytes(""), 0, &out, &err), NB_ERR_INVALID_JSON, &err);
    nb_buf_free(&err);
    EXPECT(decide(engine, "{\"customer_id\":\"C1\"}", &out, &err), NB_ERR_INVALID_REQUEST, &err);
    CHECK(has(&err, "channel"));
    CHECK(is_empty(&out));
    nb_buf_free(&err);
    EXPECT(decide(engine, "[1, 2]", &out, &err), NB_ERR_INVALID_REQUEST, &err);
    nb_buf_free(&err);
    EXPECT(decide(engine, "{\"customer_id\":\"C1\",\"channel\":\"fax\"}", &out, &err),
           NB_ERR_UNKNOWN_CHANNEL, &err);
    CHECK(has(&err, "fax"));
    CHECK(is_empty(&out));
    nb_buf_free(&err);
    EXPECT(decide(engine, "{\"customer_id\":\"C1\",\"channel\":\"fax\"}", NULL, NULL),
           NB_ERR_UNKNOWN_CHANNEL, NULL);
    EXPECT(decide(engine,
                  "{\"customer_id\":\"C1\",\"channel\":\"call_center\","
                  "\"context\":{\"segment\":\"platinum\"}}",
                  &out, &err),
           NB_ERR_INVALID_CONTEXT, &err);
    CHECK(has(&err, "segment"));
    nb_buf_free(&err);

    /* a request that only passes the length, not a NUL: the bytes after it are ignored */
    EXPECT(nb_decide(engine, bytes(GOLD_REQUEST "garbage"), strlen(GOLD_REQUEST), &out, &err),
           NB_OK, &err);
    nb_buf_free(&out);
    nb_engine_free(engine);
}

static void test_outcomes_and_stats(void) {
    nb_engine *engine = open_engine("{\"rules_dir\":\"" MINI "\"}");
    nb_buf err = {NULL, 0, 0};
    nb_buf stats = {NULL, 0, 0};
    const char *unknown_action =
        "{\"customer_id\":\"C1\",\"action\":\"CARD_PLATINUM\",\"channel\":\"call_center\","
        "\"outcome\":\"accepted\"}";
    const char *unknown_channel =
        "{\"customer_id\":\"C1\",\"action\":\"CARD_GOLD\",\"channel\":\"fax\","
        "\"outcome\":\"accepted\"}";
    const char *bad_kind =
        "{\"customer_id\":\"C1\",\"action\":\"CARD_GOLD\",\"channel\":\"call_center\","
        "\"outcome\":\"delighted\"}";
    const char *bad_utf8 = "{\"customer_id\":\"\xff\"}";

    EXPECT(nb_record_outcome(engine, bytes(GOLD_ACCEPTED), strlen(GOLD_ACCEPTED), &err), NB_OK,
           &err);
    EXPECT(nb_record_outcome(engine, bytes(GOLD_ACCEPTED), strlen(GOLD_ACCEPTED), NULL), NB_OK,
           NULL);
    EXPECT(nb_record_outcome(engine, bytes(unknown_action), strlen(unknown_action), &err),
           NB_ERR_INVALID_REQUEST, &err);
    CHECK(has(&err, "CARD_PLATINUM"));
    nb_buf_free(&err);
    EXPECT(nb_record_outcome(engine, bytes(unknown_channel), strlen(unknown_channel), &err),
           NB_ERR_UNKNOWN_CHANNEL, &err);
    nb_buf_free(&err);
    EXPECT(nb_record_outcome(engine, bytes(bad_kind), strlen(bad_kind), &err),
           NB_ERR_INVALID_REQUEST, &err);
    nb_buf_free(&err);
    EXPECT(nb_record_outcome(engine, bytes("{oops}"), 6, &err), NB_ERR_INVALID_JSON, &err);
    nb_buf_free(&err);
    EXPECT(nb_record_outcome(engine, bytes(bad_utf8), strlen(bad_utf8), &err),
           NB_ERR_INVALID_UTF8, &err);
    nb_buf_free(&err);
    EXPECT(nb_record_outcome(engine, NULL, 0, &err), NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);
    EXPECT(nb_record_outcome(NULL, bytes(GOLD_ACCEPTED), strlen(GOLD_ACCEPTED), &err),
           NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);

    EXPECT(decide(engine, GOLD_REQUEST, NULL, NULL), NB_OK, NULL);
    EXPECT(decide(engine, "{\"customer_id\":\"C1\",\"channel\":\"fax\"}", NULL, NULL),
           NB_ERR_UNKNOWN_CHANNEL, NULL);
    EXPECT(nb_engine_stats(engine, &stats), NB_OK, NULL);
    CHECK(json_int(&stats, "outcomes") == 2);
    CHECK(json_int(&stats, "champion") == 1);
    CHECK(json_int(&stats, "decision_errors") == 1);
    CHECK(json_int(&stats, "loads_succeeded") == 1);
    CHECK(has(&stats, "\"name\":\"mini\""));
    nb_buf_free(&stats);
    EXPECT(nb_engine_stats(engine, NULL), NB_OK, NULL);
    EXPECT(nb_engine_stats(NULL, &stats), NB_ERR_NULL_ARGUMENT, NULL);
    CHECK(is_empty(&stats));
    nb_engine_free(engine);
}

static void test_flush(void) {
    char dir[] = "/tmp/nextbest-ffi-XXXXXX";
    char path[256], config[512], line[8192];
    nb_buf err = {NULL, 0, 0};
    nb_engine *engine;
    FILE *log;
    int lines = 0, i;

    if (mkdtemp(dir) == NULL) {
        check(0, "mkdtemp", __FILE__, __LINE__);
        return;
    }
    snprintf(path, sizeof path, "%s/decisions.jsonl", dir);
    snprintf(config, sizeof config,
             "{\"rules_dir\":\"" MINI "\",\"decision_log\":{\"path\":\"%s\"}}", path);
    engine = open_engine(config);
    for (i = 0; i < 3; i++) EXPECT(decide(engine, GOLD_REQUEST, NULL, NULL), NB_OK, NULL);
    EXPECT(nb_record_outcome(engine, bytes(GOLD_ACCEPTED), strlen(GOLD_ACCEPTED), NULL), NB_OK,
           NULL);
    EXPECT(nb_engine_flush(engine, &err), NB_OK, &err);
    EXPECT(nb_engine_flush(engine, NULL), NB_OK, NULL);
    EXPECT(nb_engine_flush(NULL, &err), NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);

    log = fopen(path, "r");
    CHECK(log != NULL);
    if (log != NULL) {
        while (fgets(line, sizeof line, log) != NULL)
            if (strchr(line, '\n') != NULL) lines++;
        fclose(log);
    }
    CHECK(lines == 4); /* three decisions and one outcome, all written before flush returned */
    nb_engine_free(engine);
    unlink(path);
    CHECK(rmdir(dir) == 0);

    /* without a decision log, flush has nothing to do */
    engine = open_engine("{\"rules_dir\":\"" MINI "\"}");
    EXPECT(nb_engine_flush(engine, &err), NB_OK, &err);
    nb_engine_free(engine);
}

static void test_save_state(void) {
    char dir[] = "/tmp/nextbest-ffi-XXXXXX";
    char path[256], config[512];
    nb_buf err = {NULL, 0, 0};
    nb_buf stats = {NULL, 0, 0};
    nb_engine *engine;

    if (mkdtemp(dir) == NULL) {
        check(0, "mkdtemp", __FILE__, __LINE__);
        return;
    }
    snprintf(path, sizeof path, "%s/state.jsonl", dir);
    engine = open_engine("{\"rules_dir\":\"" MINI "\"}");
    EXPECT(nb_record_outcome(engine, bytes(GOLD_ACCEPTED), strlen(GOLD_ACCEPTED), NULL), NB_OK,
           NULL);
    EXPECT(nb_engine_save_state(engine, bytes(path), strlen(path), &err), NB_OK, &err);
    /* each failure fills err: free it before the next call reuses it */
    EXPECT(nb_engine_save_state(NULL, bytes(path), strlen(path), &err), NB_ERR_NULL_ARGUMENT,
           &err);
    nb_buf_free(&err);
    EXPECT(nb_engine_save_state(engine, NULL, 4, &err), NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);
    EXPECT(nb_engine_save_state(engine, bytes("\xff"), 1, &err), NB_ERR_INVALID_UTF8, &err);
    nb_buf_free(&err);
    EXPECT(nb_engine_save_state(engine, bytes("/nonexistent-dir/x/state.jsonl"), 30, &err),
           NB_ERR_IO, &err);
    CHECK(has(&err, "nonexistent-dir"));
    nb_buf_free(&err);
    nb_engine_free(engine);

    /* a new engine opened with the state file has the history and counts */
    snprintf(config, sizeof config, "{\"rules_dir\":\"" MINI "\",\"state_file\":\"%s\"}",
             path);
    engine = open_engine(config);
    EXPECT(nb_engine_stats(engine, &stats), NB_OK, NULL);
    CHECK(has(&stats, "\"history\":{\"customers\":1,\"events\":1}"));
    nb_buf_free(&stats);
    nb_engine_free(engine);
    unlink(path);
    CHECK(rmdir(dir) == 0);
}

static void test_load_and_rollback(void) {
    nb_engine *engine = open_engine("{\"rules_dir\":\"" MINI "\"}");
    nb_buf version = {NULL, 0, 0};
    nb_buf err = {NULL, 0, 0};
    nb_buf stats = {NULL, 0, 0};

    EXPECT(nb_engine_rollback(engine, &version, &err), NB_ERR_NO_PREVIOUS_VERSION, &err);
    CHECK(is_empty(&version));
    nb_buf_free(&err);

    EXPECT(load(NULL, MINI_V2, &version, &err), NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);
    EXPECT(nb_engine_load_rules(engine, NULL, 0, &version, &err), NB_ERR_NULL_ARGUMENT, &err);
    CHECK(has(&err, "rules_dir"));
    nb_buf_free(&err);
    EXPECT(load(engine, "tests/\xff", &version, &err), NB_ERR_INVALID_UTF8, &err);
    nb_buf_free(&err);
    EXPECT(load(engine, "tests/fixtures/no_such_dir", &version, &err), NB_ERR_IO, &err);
    CHECK(is_empty(&version));
    nb_buf_free(&err);
    EXPECT(load(engine, BROKEN, &version, &err), NB_ERR_INVALID_RULES, &err);
    CHECK(is_empty(&version));
    CHECK(count(&err, "\"column\":") == 3);
    nb_buf_free(&err);

    EXPECT(load(engine, MINI_V2, &version, &err), NB_OK, &err);
    CHECK(json_int(&version, "version") == 2);
    CHECK(has(&version, "\"name\":\"mini\"") && has(&version, "\"hash\":\""));
    nb_buf_free(&version);
    /* the same content again is a no-op */
    EXPECT(load(engine, MINI_V2, &version, NULL), NB_OK, NULL);
    CHECK(json_int(&version, "version") == 2);
    nb_buf_free(&version);
    EXPECT(load(engine, MINI_V2, NULL, NULL), NB_OK, NULL);

    EXPECT(nb_engine_stats(engine, &stats), NB_OK, NULL);
    CHECK(json_int(&stats, "loads_failed") == 2); /* the missing and the broken directory */
    nb_buf_free(&stats);

    EXPECT(nb_engine_rollback(engine, &version, &err), NB_OK, &err);
    CHECK(json_int(&version, "version") == 1);
    nb_buf_free(&version);
    EXPECT(nb_engine_rollback(engine, &version, &err), NB_ERR_NO_PREVIOUS_VERSION, &err);
    CHECK(is_empty(&version));
    CHECK(has(&err, "roll back"));
    nb_buf_free(&err);
    EXPECT(nb_engine_rollback(engine, NULL, NULL), NB_ERR_NO_PREVIOUS_VERSION, NULL);
    EXPECT(nb_engine_rollback(NULL, &version, &err), NB_ERR_NULL_ARGUMENT, &err);
    nb_buf_free(&err);

    /* a new load after a rollback gets a new number */
    EXPECT(load(engine, MINI_V2, &version, &err), NB_OK, &err);
    CHECK(json_int(&version, "version") == 3);
    nb_buf_free(&version);
    EXPECT(nb_engine_rollback(engine, NULL, &err), NB_OK, &err);
    nb_engine_free(engine);
}

/* ---- threads: four deciders while the main thread swaps versions ---- */

/* A fixed amount of work on both sides, so the test takes the same time
 * under valgrind (which runs one thread at a time) as natively. The main
 * thread keeps swapping while any decider runs, up to MAX_SWAPS. */
#define DECIDERS 4
#define DECISIONS_EACH 250
#define MIN_SWAPS 20
#define MAX_SWAPS 400

static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static int deciders_running = 0;

struct decider {
    pthread_t thread;
    const nb_engine *engine;
    long decisions;
    long failures;
};

static void *decide_in_a_loop(void *arg) {
    struct decider *d = (struct decider *)arg;
    for (d->decisions = 0; d->decisions < DECISIONS_EACH; d->decisions++) {
        nb_buf out = {NULL, 0, 0};
        nb_buf err = {NULL, 0, 0};
        nb_status s = decide(d->engine, GOLD_REQUEST, &out, &err);
        if (s != NB_OK || !has(&out, "\"action\":\"CARD_GOLD\"") || !is_empty(&err)) d->failures++;
        nb_buf_free(&out);
        nb_buf_free(&err);
    }
    pthread_mutex_lock(&running_lock);
    deciders_running--;
    pthread_mutex_unlock(&running_lock);
    return NULL;
}

static int any_decider_running(void) {
    int running;
    pthread_mutex_lock(&running_lock);
    running = deciders_running;
    pthread_mutex_unlock(&running_lock);
    return running > 0;
}

static void test_threads(void) {
    nb_engine *engine = open_engine("{\"rules_dir\":\"" MINI "\"}");
    struct decider deciders[DECIDERS];
    nb_buf version = {NULL, 0, 0};
    nb_buf stats = {NULL, 0, 0};
    int i, swaps;

    deciders_running = DECIDERS;
    for (i = 0; i < DECIDERS; i++) {
        deciders[i].engine = engine;
        deciders[i].decisions = 0;
        deciders[i].failures = 0;
        CHECK(pthread_create(&deciders[i].thread, NULL, decide_in_a_loop, &deciders[i]) == 0);
    }
    for (swaps = 0; swaps < MIN_SWAPS || (swaps < MAX_SWAPS && any_decider_running()); swaps++) {
        EXPECT(load(engine, swaps % 2 == 0 ? MINI_V2 : MINI, &version, NULL), NB_OK, NULL);
        CHECK(json_int(&version, "version") > 1);
        nb_buf_free(&version);
        if (swaps % 3 == 2) {
            nb_status s = nb_engine_rollback(engine, &version, NULL);
            CHECK(s == NB_OK || s == NB_ERR_NO_PREVIOUS_VERSION);
            CHECK(s != NB_OK || json_int(&version, "version") >= 1);
            nb_buf_free(&version);
        }
    }
    for (i = 0; i < DECIDERS; i++) {
        CHECK(pthread_join(deciders[i].thread, NULL) == 0);
        CHECK(deciders[i].failures == 0);
        CHECK(deciders[i].decisions == DECISIONS_EACH);
    }
    EXPECT(nb_engine_stats(engine, &stats), NB_OK, NULL);
    CHECK(json_int(&stats, "champion") == DECIDERS * DECISIONS_EACH);
    CHECK(json_int(&stats, "decision_errors") == 0);
    CHECK(json_int(&stats, "loads_succeeded") > 1);
    CHECK(json_int(&stats, "loads_failed") == 0);
    nb_buf_free(&stats);
    nb_engine_free(engine);
}

int main(void) {
    test_versions_and_statuses();
    test_buffers();
    test_open();
    test_decide();
    test_outcomes_and_stats();
    test_flush();
    test_save_state();
    test_load_and_rollback();
    test_threads();
    if (failures != 0) {
        fprintf(stderr, "ffi_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("ffi_test: all checks passed\n");
    return 0;
}
