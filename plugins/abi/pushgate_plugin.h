/* pushgate provider plugin ABI, version 1. Kept in sync with plugins/abi/src/lib.rs
 * (a test compares them).
 *
 * A plugin is a shared library exporting:
 *   uint32_t pushgate_plugin_abi_version(void);             -- checked first
 *   const pushgate_plugin_vtable *pushgate_plugin_entry(void);
 *
 * Data crosses as UTF-8 JSON bytes. Buffers the plugin returns are allocated by the plugin
 * and released by the host with free_buffer. Functions must not let exceptions or crashes
 * escape: return a status. Instances are used from several threads at once.
 *
 * send() gets {"delivery_id","message_id","app","cid","from","payload","ttl_ms","attempt",
 * "idempotency_key"} and answers {"provider_ref"} (OK) or {"code","message","retry_after_ms"?}.
 * parse_receipts() answers {"receipts":[{"provider_ref","cid","status":"delivered"|"failed",
 * "code"?,"message"?}],"rejected":[{"line","reason"}]}.
 * parse_upstream() answers {"messages":[{"cid","msgid","payload","sent_at"?}],"rejected":[…]}.
 */
#ifndef PUSHGATE_PLUGIN_H
#define PUSHGATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define PUSHGATE_PLUGIN_ABI_VERSION 1u

#define PUSHGATE_STATUS_OK 0
#define PUSHGATE_STATUS_TRANSIENT 1
#define PUSHGATE_STATUS_PERMANENT 2
#define PUSHGATE_STATUS_BAD_INPUT 3
#define PUSHGATE_STATUS_PANIC 4
#define PUSHGATE_STATUS_CREATE_FAILED 5

typedef struct pushgate_buffer {
    uint8_t *ptr;
    size_t len;
} pushgate_buffer;

typedef struct pushgate_plugin_vtable {
    size_t struct_size;
    uint32_t abi_version;
    const char *name;
    const char *version;
    int32_t (*create)(const uint8_t *options, size_t len, void **instance, pushgate_buffer *error);
    int32_t (*send)(void *instance, const uint8_t *delivery, size_t len, pushgate_buffer *result);
    void (*free_buffer)(pushgate_buffer buffer);
    void (*destroy)(void *instance);
    // Optional (NULL: not supported).
    int32_t (*parse_receipts)(void *instance, const uint8_t *body, size_t len, pushgate_buffer *result);
    int32_t (*parse_upstream)(void *instance, const uint8_t *body, size_t len, pushgate_buffer *result);
} pushgate_plugin_vtable;

uint32_t pushgate_plugin_abi_version(void);
const pushgate_plugin_vtable *pushgate_plugin_entry(void);

#endif
