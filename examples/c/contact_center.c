/*
 * contact_center: a small agent desktop in C on nextbest's C ABI.
 *
 * For each customer who calls (one JSON line per customer,
 * {"customer_id": "...", "context": {...}}), ask nextbest for the next best
 * actions on the call_center channel, show the agent each action with its
 * treatment and why it ranks where it does (rank, priority = P x C x V x L),
 * offer the top one, record what the customer said (a deterministic
 * simulation: the same customer and action always get the same answer),
 * and print a summary at the end.
 *
 * Build and run from the repository root:
 *
 *   cargo build --release && gcc -std=c11 -O2 -Iinclude examples/c/contact_center.c \
 *       target/release/libnextbest.a -lpthread -ldl -lm -o contact_center && \
 *   ./contact_center rules/retail_bank < rules/retail_bank/customers.jsonl
 *
 * or with a customers file as the second argument:
 *
 *   ./contact_center tests/fixtures/mini tests/fixtures/mini/customers.jsonl
 */
#define _POSIX_C_SOURCE 200809L

#include "nextbest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL "call_center"
#define MAX_TRACKED 64

/* Offers and acceptances per action, for the summary. */
struct tally {
    char action[64];
    int offered;
    int accepted;
};

static struct tally tallies[MAX_TRACKED];
static int tracked = 0;

static struct tally *tally_for(const char *action) {
    int i;
    for (i = 0; i < tracked; i++)
        if (strcmp(tallies[i].action, action) == 0) return &tallies[i];
    if (tracked == MAX_TRACKED) return NULL;
    snprintf(tallies[tracked].action, sizeof tallies[tracked].action, "%s", action);
    return &tallies[tracked++];
}

/* ---- just enough JSON reading for nextbest's flat, well-formed output ---- */

/* Past the string starting at the opening quote `p`. */
static const char *skip_string(const char *p) {
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
    return *p ? p + 1 : p;
}

/* Past the object or array starting at `p`, quotes respected. */
static const char *skip_nested(const char *p) {
    int depth = 0;
    do {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        if (*p == '}' || *p == ']') depth--;
        p++;
    } while (*p && depth > 0);
    return p;
}

/* The value of "key" in [from, to): a string's raw (still escaped) text,
 * or a number's text, copied into out. Returns 0 when absent. */
static int field(const char *from, const char *to, const char *key, char *out, size_t size) {
    char pattern[64];
    const char *p, *end;
    size_t n;
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    p = strstr(from, pattern);
    if (p == NULL || p >= to) return 0;
    p += strlen(pattern);
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '"') {
        end = skip_string(p) - 1;
        p++;
    } else {
        end = p + strcspn(p, ",}]");
    }
    n = (size_t)(end - p) < size - 1 ? (size_t)(end - p) : size - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return 1;
}

/* FNV-1a: a stable hash, so the simulated customers answer the same way on every run. */
static unsigned long fnv1a(const char *a, const char *b) {
    unsigned long h = 2166136261UL;
    for (; *a; a++) h = (h ^ (unsigned char)*a) * 16777619UL;
    for (; *b; b++) h = (h ^ (unsigned char)*b) * 16777619UL;
    return h & 0xffffffffUL;
}

/* Show the decision; offer the top action and record the answer. Returns 1 if an action was offered. */
static int serve(const nb_engine *engine, const char *customer, const char *decision) {
    const char *p = strstr(decision, "\"actions\":[");
    const char *end;
    char decision_id[64] = "", action[64], treatment[256], rank[16], priority[32];
    char p_[32], c_[32], v_[32], l_[32], top[64] = "", outcome[512];
    nb_buf err = {NULL, 0, 0};
    int accepted;
    struct tally *t;

    field(decision, decision + strlen(decision), "decision_id", decision_id, sizeof decision_id);
    if (p == NULL) return 0;
    end = skip_nested(p + strlen("\"actions\":"));
    for (p = strchr(p, '{'); p != NULL && p < end; p = strchr(p, '{')) {
        const char *close = skip_nested(p);
        field(p, close, "rank", rank, sizeof rank);
        field(p, close, "action", action, sizeof action);
        field(p, close, "treatment", treatment, sizeof treatment);
        field(p, close, "priority", priority, sizeof priority);
        field(p, close, "propensity", p_, sizeof p_);
        field(p, close, "context_weight", c_, sizeof c_);
        field(p, close, "value", v_, sizeof v_);
        field(p, close, "lever", l_, sizeof l_);
        printf("  %s. %-16s \"%s\"\n     priority %.4g = P %.3g x C %.3g x V %.4g x L %.3g\n", rank,
               action, treatment, atof(priority), atof(p_), atof(c_), atof(v_), atof(l_));
        if (top[0] == 0) snprintf(top, sizeof top, "%s", action);
        p = close;
    }
    if (top[0] == 0) {
        printf("  (no action: nothing to offer this customer)\n");
        return 0;
    }

    accepted = fnv1a(customer, top) % 100 < 35;
    printf("  -> offered %s: %s\n", top, accepted ? "accepted" : "rejected");
    snprintf(outcome, sizeof outcome,
             "{\"decision_id\":\"%s\",\"customer_id\":\"%s\",\"action\":\"%s\",\"channel\":\"" CHANNEL
             "\",\"outcome\":\"%s\"}",
             decision_id, customer, top, accepted ? "accepted" : "rejected");
    if (nb_record_outcome(engine, (const uint8_t *)outcome, strlen(outcome), &err) != NB_OK) {
        fprintf(stderr, "  outcome not recorded: %s\n", (const char *)err.ptr);
        nb_buf_free(&err);
    }
    if ((t = tally_for(top)) != NULL) {
        t->offered++;
        t->accepted += accepted;
    }
    return 1;
}

int main(int argc, char **argv) {
    char config[1024], customer[128];
    char *line = NULL, *request = NULL;
    size_t line_cap = 0;
    long customers = 0, offered = 0, errors = 0;
    nb_engine *engine = NULL;
    nb_buf err = {NULL, 0, 0};
    nb_status status;
    FILE *in = stdin;
    int i;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s RULES_DIR [CUSTOMERS.jsonl]   (customers on stdin by default)\n",
                argv[0]);
        return 2;
    }
    if (argc == 3 && (in = fopen(argv[2], "r")) == NULL) {
        perror(argv[2]);
        return 2;
    }
    /* A real service would JSON-escape the path; rule directories rarely need it. */
    snprintf(config, sizeof config, "{\"rules_dir\":\"%s\"}", argv[1]);
    status = nb_engine_open((const uint8_t *)config, strlen(config), &engine, &err);
    if (status != NB_OK) {
        fprintf(stderr, "cannot open %s: %s\n%s\n", argv[1], nb_status_str(status), (const char *)err.ptr);
        nb_buf_free(&err);
        return 1;
    }
    printf("nextbest %s, rules %s\n\n", nb_version(), argv[1]);

    while (getline(&line, &line_cap, in) != -1) {
        const char *open = strchr(line, '{');
        const char *context, *context_end;
        nb_buf decision = {NULL, 0, 0};
        size_t len;
        if (open == NULL) continue; /* blank line */
        customers++;
        if (!field(open, open + strlen(open), "customer_id", customer, sizeof customer))
            snprintf(customer, sizeof customer, "?");
        /* The request: this desktop's channel, the customer id and the
         * line's "context" object (whatever channel the line names). */
        context = strstr(open, "\"context\":");
        if (context != NULL) context = strchr(context + 10, '{');
        if (context == NULL) {
            printf("customer %s\n  error: no \"context\" object\n", customer);
            errors++;
            continue;
        }
        context_end = skip_nested(context);
        len = strlen(customer) + (size_t)(context_end - context) + 64;
        request = (char *)realloc(request, len);
        if (request == NULL) return 1;
        snprintf(request, len, "{\"channel\":\"" CHANNEL "\",\"customer_id\":\"%s\",\"context\":%.*s}",
                 customer, (int)(context_end - context), context);

        printf("customer %s\n", customer);
        status = nb_decide(engine, (const uint8_t *)request, strlen(request), &decision, &err);
        if (status != NB_OK) {
            printf("  error: %s: %s\n", nb_status_str(status), (const char *)err.ptr);
            nb_buf_free(&err);
            errors++;
            continue;
        }
        offered += serve(engine, customer, (const char *)decision.ptr);
        nb_buf_free(&decision);
    }

    printf("\n%ld customers, %ld offered an action, %ld left with nothing, %ld errors\n", customers,
           offered, customers - offered - errors, errors);
    for (i = 0; i < tracked; i++)
        printf("  %-16s offered %3d  accepted %3d (%.0f%%)\n", tallies[i].action, tallies[i].offered,
               tallies[i].accepted, 100.0 * tallies[i].accepted / tallies[i].offered);

    free(line);
    free(request);
    if (in != stdin) fclose(in);
    nb_engine_free(engine);
    return 0;
}
