/* The `text` example plugin: echo, reverse, upper, wordcount, fnv1a64 and
 * lines. Its results are byte for byte those of the Rust and Go versions
 * (fixtures/vectors/text.json). */
#include "pabi.h"

#define OUT_OF_MEMORY() pabi_error(PABI_OUT_OF_MEMORY, "cannot allocate memory for the input")
#define WRITE(src, len) \
    do { if (pabi_output((src), (len)) != 0) return pabi_error(PABI_FAILED, "output_write failed"); } while (0)

PABI_FUNCTION(echo) {
    const uint8_t *input = pabi_input(input_len);
    if (!input) return OUT_OF_MEMORY();
    WRITE(input, input_len);
    return PABI_OK;
}

PABI_FUNCTION(reverse) {
    uint8_t *bytes = pabi_input(input_len);
    if (!bytes) return OUT_OF_MEMORY();
    for (uint32_t i = 0, j = input_len; i + 1 < j; i++, j--) {
        uint8_t t = bytes[i];
        bytes[i] = bytes[j - 1];
        bytes[j - 1] = t;
    }
    WRITE(bytes, input_len);
    return PABI_OK;
}

PABI_FUNCTION(upper) {
    uint8_t *text = pabi_input(input_len);
    if (!text) return OUT_OF_MEMORY();
    if (!pabi_utf8_valid(text, input_len)) return pabi_error(PABI_INVALID_INPUT, "input is not valid UTF-8");
    for (uint32_t i = 0; i < input_len; i++)
        if (text[i] >= 'a' && text[i] <= 'z') text[i] = (uint8_t)(text[i] - ('a' - 'A'));
    WRITE(text, input_len);
    return PABI_OK;
}

static int is_space(uint8_t b) {
    return b == ' ' || b == '\t' || b == '\n' || b == 0x0b || b == 0x0c || b == '\r';
}

PABI_FUNCTION(wordcount) {
    const uint8_t *input = pabi_input(input_len);
    if (!input) return OUT_OF_MEMORY();
    uint64_t words = 0, lines = 0;
    int in_word = 0;
    for (uint32_t i = 0; i < input_len; i++) {
        if (input[i] == '\n') lines++;
        if (is_space(input[i])) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    char json[96];
    uint32_t n = 0;
    static const char k_bytes[] = "{\"bytes\":", k_words[] = ",\"words\":", k_lines[] = ",\"lines\":";
    for (uint32_t i = 0; k_bytes[i]; i++) json[n++] = k_bytes[i];
    n += pabi_format_u64(json + n, input_len);
    for (uint32_t i = 0; k_words[i]; i++) json[n++] = k_words[i];
    n += pabi_format_u64(json + n, words);
    for (uint32_t i = 0; k_lines[i]; i++) json[n++] = k_lines[i];
    n += pabi_format_u64(json + n, lines);
    json[n++] = '}';
    WRITE(json, n);
    return PABI_OK;
}

PABI_FUNCTION(fnv1a64) {
    /* Hashes the input 4 KiB at a time; it never needs the whole input. */
    uint8_t chunk[4096];
    uint64_t hash = 0xcbf29ce484222325ull;
    uint32_t offset = 0;
    for (;;) {
        int32_t n = pabi_input_read(chunk, offset, sizeof chunk);
        if (n <= 0) break;
        for (int32_t i = 0; i < n; i++) {
            hash ^= chunk[i];
            hash *= 0x100000001b3ull;
        }
        offset += (uint32_t)n;
    }
    char hex[16];
    WRITE(hex, pabi_format_hex64(hex, hash));
    return PABI_OK;
}

/* Output buffer for `lines`: flushed to the host when full. */
static uint8_t out_buf[65536];
static uint32_t out_len;

static int out_flush(void) {
    int32_t rc = pabi_output(out_buf, out_len);
    out_len = 0;
    return rc;
}

static int out_put(const uint8_t *src, uint32_t len) {
    while (len) {
        if (out_len == sizeof out_buf && out_flush() != 0) return -1;
        uint32_t room = (uint32_t)sizeof out_buf - out_len;
        uint32_t n = len < room ? len : room;
        __builtin_memcpy(out_buf + out_len, src, n);
        out_len += n;
        src += n;
        len -= n;
    }
    return 0;
}

/* Numbers lines as N\tLINE\n, reading the input 4 KiB at a time and writing
 * as it goes, so neither the input nor a line is held whole. */
PABI_FUNCTION(lines) {
    uint8_t chunk[4096];
    uint32_t offset = 0;
    uint64_t number = 0;
    int at_line_start = 1;
    out_len = 0;
    for (;;) {
        int32_t got = pabi_input_read(chunk, offset, sizeof chunk);
        if (got <= 0) break;
        offset += (uint32_t)got;
        uint32_t i = 0, n = (uint32_t)got;
        while (i < n) {
            if (at_line_start) {
                char prefix[21];
                uint32_t len = pabi_format_u64(prefix, ++number);
                prefix[len++] = '\t';
                if (out_put((const uint8_t *)prefix, len) != 0) goto failed;
                at_line_start = 0;
            }
            uint32_t end = i;
            while (end < n && chunk[end] != '\n') end++;
            if (end < n) {
                end++; /* include the newline */
                at_line_start = 1;
            }
            if (out_put(chunk + i, end - i) != 0) goto failed;
            i = end;
        }
    }
    if (!at_line_start && out_put((const uint8_t *)"\n", 1) != 0) goto failed;
    if (out_flush() != 0) goto failed;
    return PABI_OK;
failed:
    return pabi_error(PABI_FAILED, "output_write failed");
}
