/* The `enrich` example plugin: a pipeline operator that enriches records by
 * asking the application that hosts it (ABI 1.1 host calls). Its results are
 * byte for byte those of the Rust and Go versions, and so are the host calls
 * it makes (fixtures/vectors/enrich.json).
 *
 * - enrich: for each line KEY of the input (lines end with \n; the last may
 *   not; empty lines are skipped) it calls kv.get with KEY and writes
 *   KEY\tVALUE\n, then calls kv.note with KEY, whose answer it ignores: the
 *   call is optional, and a host that does not offer it returns E_ABSENT. A
 *   failed kv.get ends the call with FAILED and the message
 *   `kv.get KEY: REASON`.
 * - offered: {"kv.note":true} or {"kv.note":false}. */
#include "pabi.h"

/* ---- The output, built whole ---------------------------------------------
 * Written once when every key is done, as the Rust version returns its Vec:
 * a call that would pass the host's output cap (LIM-5) then still makes every
 * host call before it is stopped, in every language. */

static uint8_t *out;
static uint32_t out_len, out_cap;

/* Room for `more` bytes after out_len; 0 when memory is short. The old
 * buffer stays in scratch memory until the call returns: doubling keeps the
 * waste below the final size. */
static int out_reserve(uint32_t more) {
    if (more <= out_cap - out_len) return 1;
    if (more > UINT32_MAX - out_len) return 0;
    uint32_t need = out_len + more;
    uint32_t cap = out_cap > UINT32_MAX / 2 ? need : out_cap * 2;
    if (cap < need) cap = need;
    if (cap < 256) cap = 256;
    uint8_t *grown = (uint8_t *)pabi_alloc(cap);
    if (!grown && cap > need) grown = (uint8_t *)pabi_alloc(cap = need);
    if (!grown) return 0;
    if (out_len) __builtin_memcpy(grown, out, out_len);
    out = grown;
    out_cap = cap;
    return 1;
}

static void out_put(const void *src, uint32_t len) {
    if (len) __builtin_memcpy(out + out_len, src, len);
    out_len += len;
}

/* ---- The failure message ----------------------------------------------------
 * FN-8 wants UTF-8; a key (or a host's message) that is not is written as
 * Rust's String::from_utf8_lossy writes it, so the message is the same in
 * every language: each maximal invalid subsequence becomes one U+FFFD. */

/* The length of the UTF-8 sequence at s (len >= 1), and in *valid whether it
 * is one; an invalid one is the longest prefix of a valid sequence, at least
 * one byte (the bounds are those of pabi_utf8_valid). */
static uint32_t utf8_step(const uint8_t *s, uint32_t len, int *valid) {
    uint8_t b = s[0];
    uint32_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    *valid = 1;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xE1 && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else { *valid = 0; return 1; }
    uint32_t i = 1;
    while (i <= need && i < len && s[i] >= (i == 1 ? lo : 0x80) && s[i] <= (i == 1 ? hi : 0xBF)) i++;
    if (i <= need) *valid = 0;
    return i;
}

/* Appends bytes to the message as UTF-8, valid runs as they are. */
static void error_lossy(const uint8_t *s, uint32_t len) {
    uint32_t run = 0, i = 0;
    while (i < len) {
        int valid;
        uint32_t step = utf8_step(s + i, len - i, &valid);
        if (!valid) {
            pabi_error_write(s + run, i - run);
            /* Once the message is full (LIM-6), nothing more is kept. */
            if (pabi_error_write("\xEF\xBF\xBD", 3) == PABI_E_LIMIT) return;
            run = i + step;
        }
        i += step;
    }
    pabi_error_write(s + run, len - run);
}

static void error_str(const char *s) { pabi_error_write(s, (uint32_t)pabi_strlen(s)); }

/* The handler's message, as much as a host keeps (CALL-4). Static: reading
 * it needs no memory that could run out. */
static uint8_t message[65536];

/* Ends the call: FAILED with `kv.get KEY: REASON`, the same words in every
 * language, for what pabi_host_call() returned. */
static int32_t failure(const uint8_t *key, uint32_t key_len, int32_t code) {
    error_str("kv.get ");
    error_lossy(key, key_len);
    error_str(": ");
    switch (code) {
    case PABI_E_FAILED:
        error_lossy(message, pabi_reply_copy(message, sizeof message));
        break;
    case PABI_E_ABSENT: error_str("not offered"); break;
    case PABI_E_LIMIT: error_str("too large"); break;
    case PABI_E_UNAVAILABLE: error_str("unavailable"); break;
    default: {
        /* A negative code this plugin does not know, e.g. of a later ABI. */
        char text[32] = "code -";
        pabi_error_write(text, 6 + pabi_format_u64(text + 6, (uint64_t)-(int64_t)code));
        break;
    }
    }
    return PABI_FAILED;
}

/* ---- The functions ----------------------------------------------------------- */

PABI_FUNCTION(enrich) {
    const uint8_t *input = pabi_input(input_len);
    if (!input) return pabi_error(PABI_OUT_OF_MEMORY, "cannot allocate memory for the input");
    out = NULL;
    out_len = out_cap = 0;
    uint32_t start = 0;
    while (start < input_len) {
        uint32_t end = start;
        while (end < input_len && input[end] != '\n') end++;
        const uint8_t *key = input + start;
        uint32_t key_len = end - start;
        start = end + 1;
        if (key_len == 0) continue;

        int32_t n = pabi_host_call_str("kv.get", key, key_len);
        if (n < 0) return failure(key, key_len, n);
        /* A reply that does not fit in memory is "too large", as a reply
         * past the host's cap is (the Rust PDK's host::call does the same). */
        if ((uint32_t)n > UINT32_MAX - key_len - 2 || !out_reserve(key_len + (uint32_t)n + 2))
            return failure(key, key_len, PABI_E_LIMIT);
        out_put(key, key_len);
        out_put("\t", 1);
        /* Straight into the output: no copy of the reply of its own. */
        out_len += pabi_reply_copy(out + out_len, (uint32_t)n);
        out_put("\n", 1);

        /* Optional: absent on hosts that do not offer it, and its answer does
         * not change the output, so its reply is not read. */
        pabi_host_call_str("kv.note", key, key_len);
    }
    if (pabi_output(out, out_len) != 0) return pabi_error(PABI_FAILED, "output_write failed");
    return PABI_OK;
}

PABI_FUNCTION(offered) {
    /* An empty kv.note is harmless, so calling it is how to find out (CALL-5). */
    int offered = pabi_host_call_str("kv.note", "", 0) != PABI_E_ABSENT;
    if (pabi_output_str(offered ? "{\"kv.note\":true}" : "{\"kv.note\":false}") != 0)
        return pabi_error(PABI_FAILED, "output_write failed");
    return PABI_OK;
}
