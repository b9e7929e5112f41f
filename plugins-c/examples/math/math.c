/* The `math` example plugin: `double`, the seed's process(x) = x * 2 over a
 * little-endian i32, wrapping on overflow. */
#include "pabi.h"

PABI_FUNCTION(double) {
    if (input_len != 4) {
        static const char prefix[] = "double needs exactly 4 bytes, got ";
        char message[sizeof prefix + 20];
        __builtin_memcpy(message, prefix, sizeof prefix - 1);
        uint32_t n = (uint32_t)sizeof prefix - 1;
        n += pabi_format_u64(message + n, input_len);
        pabi_error_write(message, n);
        return PABI_INVALID_INPUT;
    }
    uint8_t b[4];
    pabi_input_copy(b, 4);
    uint32_t x = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    x *= 2u; /* unsigned: wraps exactly like the i32 multiplication */
    uint8_t out[4] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    return pabi_output(out, 4) == 0 ? PABI_OK : pabi_error(PABI_FAILED, "output_write failed");
}
