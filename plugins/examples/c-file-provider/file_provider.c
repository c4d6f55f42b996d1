/* A pushgate provider plugin in C: "delivers" each message by appending a line to a file
 * (options {"outbox": "/path/file", "token": "<shared secret>"}), and takes receipts as
 * plain-text lines "<token> <ref> <cid>". Build:
 *   cc -shared -fPIC -I plugins/abi -o libfile_provider.so plugins/examples/c-file-provider/file_provider.c
 * Test-only variants: -DWRONG_ABI (reports ABI 999), -DSMALL_VTABLE (struct_size 8),
 * -DNO_ENTRY (no entry symbol). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushgate_plugin.h"

typedef struct instance {
    char outbox[1024];
    char token[256];
    unsigned long counter;
    pthread_mutex_t lock;
} instance;

static pushgate_buffer give(const char *text, size_t len) {
    pushgate_buffer b = {NULL, 0};
    b.ptr = (uint8_t *)malloc(len ? len : 1);
    if (b.ptr) {
        memcpy(b.ptr, text, len);
        b.len = len;
    }
    return b;
}

static pushgate_buffer give_str(const char *text) { return give(text, strlen(text)); }

/* Copies the string value of "key" from a flat JSON object (no escapes in the value). */
static int json_string(const uint8_t *json, size_t len, const char *key, char *out, size_t cap) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    char *copy = (char *)malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, json, len);
    copy[len] = 0;
    int found = 0;
    char *at = strstr(copy, pattern);
    if (at) {
        at = strchr(at + strlen(pattern), ':');
        if (at) at = strchr(at, '"');
        if (at) {
            char *end = strchr(at + 1, '"');
            if (end && (size_t)(end - at - 1) < cap) {
                memcpy(out, at + 1, (size_t)(end - at - 1));
                out[end - at - 1] = 0;
                found = 1;
            }
        }
    }
    free(copy);
    return found;
}

static int32_t create(const uint8_t *options, size_t len, void **out, pushgate_buffer *error) {
    instance *self = (instance *)calloc(1, sizeof(instance));
    if (!self) {
        *error = give_str("out of memory");
        return PUSHGATE_STATUS_CREATE_FAILED;
    }
    if (!json_string(options, len, "outbox", self->outbox, sizeof self->outbox) ||
        !json_string(options, len, "token", self->token, sizeof self->token)) {
        free(self);
        *error = give_str("options need \"outbox\" (a file path) and \"token\"");
        return PUSHGATE_STATUS_CREATE_FAILED;
    }
    pthread_mutex_init(&self->lock, NULL);
    *out = self;
    return PUSHGATE_STATUS_OK;
}

static int32_t send(void *ptr, const uint8_t *delivery, size_t len, pushgate_buffer *result) {
    instance *self = (instance *)ptr;
    char cid[128];
    if (!self || !json_string(delivery, len, "cid", cid, sizeof cid)) {
        *result = give_str("{\"code\":\"bad_input\",\"message\":\"no cid\"}");
        return PUSHGATE_STATUS_BAD_INPUT;
    }
    pthread_mutex_lock(&self->lock);
    unsigned long n = ++self->counter;
    FILE *f = fopen(self->outbox, "a");
    int ok = 0;
    if (f) {
        fprintf(f, "c-%lu\t%s\t", n, cid);
        fwrite(delivery, 1, len, f);
        fputc('\n', f);
        ok = fclose(f) == 0;
    }
    pthread_mutex_unlock(&self->lock);
    char answer[256];
    if (!ok) {
        *result = give_str("{\"code\":\"io\",\"message\":\"cannot append to the outbox file\"}");
        return PUSHGATE_STATUS_TRANSIENT;
    }
    snprintf(answer, sizeof answer, "{\"provider_ref\":\"c-%lu\"}", n);
    *result = give_str(answer);
    return PUSHGATE_STATUS_OK;
}

static int32_t parse_receipts(void *ptr, const uint8_t *body, size_t len, pushgate_buffer *result) {
    instance *self = (instance *)ptr;
    size_t cap = 64 + len * 2;
    char *out = (char *)malloc(cap), *copy = (char *)malloc(len + 1);
    if (!out || !copy) {
        free(out);
        free(copy);
        return PUSHGATE_STATUS_PANIC;
    }
    memcpy(copy, body, len);
    copy[len] = 0;
    size_t used = (size_t)snprintf(out, cap, "{\"receipts\":[");
    char rejected[4096] = "";
    int line = 0, first = 1;
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        char token[256], ref[128], cid[128];
        if (sscanf(l, "%255s %127s %127s", token, ref, cid) != 3 || strcmp(token, self->token) != 0) {
            size_t r = strlen(rejected);
            snprintf(rejected + r, sizeof rejected - r, "%s{\"line\":%d,\"reason\":\"bad token or format\"}",
                     r ? "," : "", line);
            continue;
        }
        used += (size_t)snprintf(out + used, cap - used,
                                 "%s{\"provider_ref\":\"%s\",\"cid\":\"%s\",\"status\":\"delivered\"}",
                                 first ? "" : ",", ref, cid);
        first = 0;
    }
    char *full = (char *)malloc(used + strlen(rejected) + 32);
    if (full) sprintf(full, "%.*s],\"rejected\":[%s]}", (int)used, out, rejected);
    free(out);
    free(copy);
    if (!full) return PUSHGATE_STATUS_PANIC;
    *result = give_str(full);
    free(full);
    return PUSHGATE_STATUS_OK;
}

static void free_buffer(pushgate_buffer b) { free(b.ptr); }

static void destroy(void *ptr) {
    instance *self = (instance *)ptr;
    if (self) {
        pthread_mutex_destroy(&self->lock);
        free(self);
    }
}

static const pushgate_plugin_vtable VTABLE = {
#ifdef SMALL_VTABLE
    8,
#else
    sizeof(pushgate_plugin_vtable),
#endif
    PUSHGATE_PLUGIN_ABI_VERSION, "c-file", "1.0.0", create, send, free_buffer, destroy, parse_receipts, NULL,
};

uint32_t pushgate_plugin_abi_version(void) {
#ifdef WRONG_ABI
    return 999;
#else
    return PUSHGATE_PLUGIN_ABI_VERSION;
#endif
}

#ifndef NO_ENTRY
const pushgate_plugin_vtable *pushgate_plugin_entry(void) { return &VTABLE; }
#else
/* The test variant without the entry symbol exports the table under another name. */
const pushgate_plugin_vtable *not_the_entry(void) { return &VTABLE; }
#endif
