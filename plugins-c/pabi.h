/*
 * pabi.h - write pabi WebAssembly plugins in C. One header, nothing to link.
 *
 *   #include "pabi.h"
 *
 *   PABI_FUNCTION(shout) {                      // exports pabi_fn_shout(i32) -> i32
 *       uint8_t *text = pabi_input(input_len);  // the whole input, freed after the call
 *       if (!text) return pabi_error(PABI_OUT_OF_MEMORY, "no memory for the input");
 *       for (uint32_t i = 0; i < input_len; i++)
 *           if (text[i] >= 'a' && text[i] <= 'z') text[i] -= 32;
 *       pabi_output(text, input_len);
 *       return pabi_output_str("!") == 0 ? PABI_OK : PABI_FAILED;
 *   }
 *
 * Build, either freestanding (no libc at all):
 *
 *   clang --target=wasm32 -nostdlib -ffreestanding -mbulk-memory -O2 \
 *         -Wl,--no-entry -o raw.wasm plugin.c
 *
 * or against wasi-libc (malloc, string.h, ... ; a reactor, no _start):
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -o raw.wasm plugin.c
 *
 * then add the metadata section, which clang cannot write itself:
 *
 *   pabi embed --metadata pabi.json raw.wasm -o plugin.wasm
 *
 * Keep the name section (do not pass -s or -Wl,--strip-all): hosts use it to
 * name functions in traces, and `pabi validate` warns without it (MOD-5).
 *
 * Memory model. pabi copies bytes in and out; no buffer changes owner. A
 * plugin function gets only its input length; it pulls the bytes with
 * pabi_input_read() (or pabi_input()) and pushes output with pabi_output().
 * pabi_alloc() hands out scratch memory that lives until the current export
 * returns; memory allocated during PABI_INIT lives as long as the instance.
 * Freestanding, pabi_alloc() is a bump allocator over memory.grow starting at
 * __heap_base; with wasi-libc it uses malloc/free, and the rest of the heap is
 * yours. Do not mix pabi_alloc() with your own memory.grow.
 *
 * Freestanding builds need -mbulk-memory: clang then turns memcpy/memset
 * (including the ones it invents for struct copies) into memory.copy and
 * memory.fill instead of calls to a libc that is not there.
 */
#ifndef PABI_H
#define PABI_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__wasm32__)
#error "pabi.h targets wasm32: build with --target=wasm32 or --target=wasm32-wasi"
#endif

#if defined(__wasi__)
#include <stdlib.h>
#define PABI_LIBC 1
#else
#define PABI_LIBC 0
#if !defined(__wasm_bulk_memory__)
#error "freestanding pabi plugins need -mbulk-memory (memcpy and memset become memory.copy and memory.fill)"
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status codes (ERR-1..ERR-3) ---------------------------------------- */

typedef enum pabi_status {
    PABI_OK = 0,            /* success; the output is what was written        */
    PABI_INVALID_INPUT = 1, /* the input (or config, or state) was refused     */
    PABI_UNSUPPORTED = 2,   /* the plugin does not support the request         */
    PABI_FAILED = 3,        /* the call failed for another reason              */
    PABI_OUT_OF_MEMORY = 4, /* the plugin ran out of memory                    */
    PABI_CUSTOM_MIN = 64,   /* 64..127: plugin-defined, described in metadata  */
    PABI_CUSTOM_MAX = 127
} pabi_status;

/* Codes the imports return. */
#define PABI_E_LIMIT (-1)       /* a cap: message truncated, host-call request/reply too big */
#define PABI_E_INVALID (-2)     /* e.g. an unknown log level                  */
#define PABI_E_UNAVAILABLE (-3) /* not usable in this phase, e.g. output in init */
#define PABI_E_FAILED (-4)      /* ABI 1.1: a host call's handler failed; the reply is its message */
#define PABI_E_ABSENT (-5)      /* ABI 1.1: an optional host call this host does not offer */

/* Log levels of pabi_log(). */
enum { PABI_LOG_ERROR = 0, PABI_LOG_WARN = 1, PABI_LOG_INFO = 2, PABI_LOG_DEBUG = 3, PABI_LOG_TRACE = 4 };

/* ---- The imports (module `pabi`, ABI 1.0 and 1.1) ------------------------
 * Pointers and lengths are unsigned 32-bit. A range outside memory makes the
 * host abort the call (MEM-3). */

#define PABI_IMPORT_(name) __attribute__((import_module("pabi"), import_name(#name)))

/* Copies min(len, input_len - offset) bytes of the input (config, state) to
 * dst; returns the count, 0 past the end. */
PABI_IMPORT_(input_read) int32_t pabi_input_read(void *dst, uint32_t offset, uint32_t len);
/* Appends to the output; 0, or PABI_E_UNAVAILABLE where output is not allowed. */
PABI_IMPORT_(output_write) int32_t pabi_output_write(const void *src, uint32_t len);
/* Appends to the error message; 0, or PABI_E_LIMIT when truncated. */
PABI_IMPORT_(error_write) int32_t pabi_error_write(const void *src, uint32_t len);
/* Logs at a level 0 (error) .. 4 (trace); 0, or PABI_E_INVALID. */
PABI_IMPORT_(log) int32_t pabi_log_write(int32_t level, const void *src, uint32_t len);

/* ABI 1.1 (host calls, CALL-1): a plugin that uses these declares "abi": "1.1"
 * and each name in its metadata's `host_calls`. wasm-ld imports only the
 * functions a plugin calls, so a 1.0 plugin built with this header does not
 * import them (IMP-4). */

/* Calls the application's handler `name` with the request; returns the reply
 * length, or PABI_E_LIMIT, PABI_E_UNAVAILABLE, PABI_E_FAILED (the reply is the
 * handler's message) or PABI_E_ABSENT. Prefer pabi_host_call() below. */
PABI_IMPORT_(host_call)
int32_t pabi_host_call_import(const void *name, uint32_t name_len, const void *req, uint32_t req_len);
/* Copies min(len, reply_len - offset) bytes of the latest host call's reply
 * to dst; returns the count, 0 past the end (CALL-6). */
PABI_IMPORT_(reply_read) int32_t pabi_reply_read(void *dst, uint32_t offset, uint32_t len);

/* ---- Exports --------------------------------------------------------------
 *
 *   PABI_FUNCTION(name) { ... return PABI_OK; }
 *       defines the export pabi_fn_<name>; the body sees `uint32_t input_len`.
 *   PABI_INIT { ... }          pabi_init; the body sees `uint32_t config_len`
 *                              and reads the config with pabi_input*().
 *   PABI_SHUTDOWN { ... }      pabi_shutdown.
 *   PABI_STATE_SAVE { ... }    pabi_state_save; write the state with pabi_output().
 *   PABI_STATE_LOAD { ... }    pabi_state_load; the body sees `uint32_t state_len`
 *                              and reads the state with pabi_input*().
 * Each body returns a status. Scratch memory from pabi_alloc()/pabi_input()
 * is released when the export returns (except in PABI_INIT). */

#define PABI_EXPORT_(name) __attribute__((export_name(name)))
#define PABI_UNUSED_ __attribute__((unused))

#define PABI_FUNCTION(name)                                                        \
    static int32_t pabi_body_##name(uint32_t input_len);                           \
    PABI_EXPORT_("pabi_fn_" #name) int32_t pabi_fn_##name(int32_t input_len);      \
    int32_t pabi_fn_##name(int32_t input_len) {                                    \
        int32_t status = pabi_body_##name((uint32_t)input_len);                    \
        pabi_scratch_release_();                                                   \
        return status;                                                             \
    }                                                                              \
    static int32_t pabi_body_##name(PABI_UNUSED_ uint32_t input_len)

#define PABI_INIT                                                                  \
    static int32_t pabi_body_init_(uint32_t config_len);                           \
    PABI_EXPORT_("pabi_init") int32_t pabi_init(int32_t config_len);               \
    int32_t pabi_init(int32_t config_len) {                                        \
        int32_t status = pabi_body_init_((uint32_t)config_len);                    \
        pabi_scratch_keep_();                                                      \
        return status;                                                             \
    }                                                                              \
    static int32_t pabi_body_init_(PABI_UNUSED_ uint32_t config_len)

#define PABI_SHUTDOWN                                                              \
    static int32_t pabi_body_shutdown_(void);                                      \
    PABI_EXPORT_("pabi_shutdown") int32_t pabi_shutdown(void);                     \
    int32_t pabi_shutdown(void) {                                                  \
        int32_t status = pabi_body_shutdown_();                                    \
        pabi_scratch_release_();                                                   \
        return status;                                                             \
    }                                                                              \
    static int32_t pabi_body_shutdown_(void)

#define PABI_STATE_SAVE                                                            \
    static int32_t pabi_body_state_save_(void);                                    \
    PABI_EXPORT_("pabi_state_save") int32_t pabi_state_save(void);                 \
    int32_t pabi_state_save(void) {                                                \
        int32_t status = pabi_body_state_save_();                                  \
        pabi_scratch_release_();                                                   \
        return status;                                                             \
    }                                                                              \
    static int32_t pabi_body_state_save_(void)

#define PABI_STATE_LOAD                                                            \
    static int32_t pabi_body_state_load_(uint32_t state_len);                      \
    PABI_EXPORT_("pabi_state_load") int32_t pabi_state_load(int32_t state_len);    \
    int32_t pabi_state_load(int32_t state_len) {                                   \
        int32_t status = pabi_body_state_load_((uint32_t)state_len);               \
        pabi_scratch_release_();                                                   \
        return status;                                                             \
    }                                                                              \
    static int32_t pabi_body_state_load_(PABI_UNUSED_ uint32_t state_len)

/* ---- Scratch memory --------------------------------------------------------
 * The allocator state is `weak`, so every translation unit that includes
 * this header shares one heap. */

#if PABI_LIBC

/* Blocks handed out during the current export, freed when it returns. */
typedef struct pabi_block_ { struct pabi_block_ *next; } pabi_block_;
__attribute__((weak)) pabi_block_ *pabi_scratch_list_;

/* `size` bytes aligned to 8, or NULL when out of memory. */
static inline void *pabi_alloc(size_t size) {
    const size_t header = (sizeof(pabi_block_) + 7u) & ~(size_t)7u;
    if (size > SIZE_MAX - header) return NULL;
    pabi_block_ *block = (pabi_block_ *)malloc(header + size);
    if (!block) return NULL;
    block->next = pabi_scratch_list_;
    pabi_scratch_list_ = block;
    return (uint8_t *)block + header;
}

static inline void pabi_scratch_release_(void) {
    while (pabi_scratch_list_) {
        pabi_block_ *next = pabi_scratch_list_->next;
        free(pabi_scratch_list_);
        pabi_scratch_list_ = next;
    }
}

/* After init: what init allocated stays for the instance's life. */
static inline void pabi_scratch_keep_(void) { pabi_scratch_list_ = NULL; }

#else /* freestanding */

extern unsigned char __heap_base; /* provided by wasm-ld: the end of static data */
__attribute__((weak)) uintptr_t pabi_heap_top_;  /* next free byte, 0 before first use */
__attribute__((weak)) uintptr_t pabi_heap_mark_; /* where call scratch starts */

/* `size` bytes aligned to 8, or NULL when memory cannot grow. */
static inline void *pabi_alloc(size_t size) {
    if (pabi_heap_top_ == 0) pabi_heap_top_ = pabi_heap_mark_ = ((uintptr_t)&__heap_base + 7u) & ~(uintptr_t)7u;
    uintptr_t start = pabi_heap_top_;
    if (size > UINTPTR_MAX - start - 7u) return NULL;
    uintptr_t end = (start + size + 7u) & ~(uintptr_t)7u;
    uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        uintptr_t pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return NULL;
    }
    pabi_heap_top_ = end;
    return (void *)start;
}

static inline void pabi_scratch_release_(void) {
    if (pabi_heap_top_ != 0) pabi_heap_top_ = pabi_heap_mark_;
}

static inline void pabi_scratch_keep_(void) { pabi_heap_mark_ = pabi_heap_top_; }

#endif

/* ---- Input ---------------------------------------------------------------- */

/* Reads up to `len` bytes of the input into `dst`; returns how many. */
static inline uint32_t pabi_input_copy(void *dst, uint32_t len) {
    uint32_t done = 0;
    while (done < len) {
        int32_t n = pabi_input_read((uint8_t *)dst + done, done, len - done);
        if (n <= 0) break;
        done += (uint32_t)n;
    }
    return done;
}

/* The whole input (config, state) of `len` bytes, in scratch memory; NULL
 * when out of memory. Never NULL for len 0. */
static inline uint8_t *pabi_input(uint32_t len) {
    uint8_t *buf = (uint8_t *)pabi_alloc(len ? len : 1);
    if (buf) pabi_input_copy(buf, len);
    return buf;
}

/* ---- Output, errors, logs -------------------------------------------------- */

static inline size_t pabi_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Appends bytes to the output; 0 on success, else the import's code. */
static inline int32_t pabi_output(const void *src, uint32_t len) {
    return len ? pabi_output_write(src, len) : 0;
}

static inline int32_t pabi_output_str(const char *s) {
    return pabi_output(s, (uint32_t)pabi_strlen(s));
}

/* Writes `message` as the error message and returns `status`:
 *   return pabi_error(PABI_INVALID_INPUT, "input is not valid UTF-8"); */
static inline int32_t pabi_error(int32_t status, const char *message) {
    pabi_error_write(message, (uint32_t)pabi_strlen(message));
    return status;
}

static inline void pabi_log(int32_t level, const char *message) {
    pabi_log_write(level, message, (uint32_t)pabi_strlen(message));
}

/* ---- Host calls (ABI 1.1) --------------------------------------------------
 *
 *   int32_t n = pabi_host_call_str("kv.get", key, key_len);
 *   if (n >= 0) { uint8_t *value = pabi_reply((uint32_t)n); ... }
 *   else if (n == PABI_E_FAILED) { ... pabi_reply_copy(buf, sizeof buf) ... }
 *
 * The host copies the request out and keeps the reply until the next host
 * call of this call; the plugin copies the reply into memory it owns. A
 * failed or absent call is a code, never a trap: the plugin decides what it
 * means (CALL-4). */

/* Calls the host call `name` (as declared in the metadata) with `req_len`
 * bytes at `req`: the reply length (>= 0) or a negative PABI_E_* code. */
static inline int32_t pabi_host_call(const char *name, size_t name_len, const void *req, size_t req_len) {
    /* No host's request cap is above 2^31 - 1 bytes (LIM-14): a longer
     * request is E_LIMIT without asking, as the host would answer. */
    if (req_len > 0x7fffffffu) return PABI_E_LIMIT;
    return pabi_host_call_import(name, (uint32_t)name_len, req, (uint32_t)req_len);
}

/* pabi_host_call() with a NUL-terminated name. */
static inline int32_t pabi_host_call_str(const char *name, const void *req, size_t req_len) {
    return pabi_host_call(name, pabi_strlen(name), req, req_len);
}

/* Reads up to `len` bytes of the current reply, from its start, into `dst`;
 * returns how many. Use it after PABI_E_FAILED, whose message length the
 * host does not return (at most 65,536 bytes, CALL-4), or with a buffer of
 * the length a successful pabi_host_call() returned. */
static inline uint32_t pabi_reply_copy(void *dst, uint32_t len) {
    uint32_t done = 0;
    while (done < len) {
        int32_t n = pabi_reply_read((uint8_t *)dst + done, done, len - done);
        if (n <= 0) break;
        done += (uint32_t)n;
    }
    return done;
}

/* The whole reply of `len` bytes (what pabi_host_call() returned), in
 * scratch memory; NULL when out of memory. Never NULL for len 0. */
static inline uint8_t *pabi_reply(uint32_t len) {
    uint8_t *buf = (uint8_t *)pabi_alloc(len ? len : 1);
    if (buf) pabi_reply_copy(buf, len);
    return buf;
}

/* ---- Small helpers for freestanding code ----------------------------------- */

/* Writes `value` in decimal to dst (room for 20 bytes); returns the length. */
static inline uint32_t pabi_format_u64(char *dst, uint64_t value) {
    char tmp[20];
    uint32_t n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value);
    for (uint32_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    return n;
}

/* Writes `value` as 16 lower-case hex digits to dst; returns 16. */
static inline uint32_t pabi_format_hex64(char *dst, uint64_t value) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        dst[i] = digits[value & 15u];
        value >>= 4;
    }
    return 16;
}

/* Whether bytes are well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF), as Rust's str::from_utf8 and Go's utf8.Valid. */
static inline int pabi_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b < 0x80) { i++; continue; }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b == 0xE0) { need = 2; lo = 0xA0; }
        else if (b == 0xED) { need = 2; hi = 0x9F; }
        else if (b >= 0xE1 && b <= 0xEF) need = 2;
        else if (b == 0xF0) { need = 3; lo = 0x90; }
        else if (b == 0xF4) { need = 3; hi = 0x8F; }
        else if (b >= 0xF1 && b <= 0xF3) need = 3;
        else return 0;
        if (len - i - 1 < need) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += need + 1;
    }
    return 1;
}

#ifdef __cplusplus
}
#endif

#endif /* PABI_H */
