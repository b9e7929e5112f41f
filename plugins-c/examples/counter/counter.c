/* The `counter` example plugin: each call adds 1 to a count kept in the
 * instance and returns it in decimal; the count survives a reload through
 * pabi_state_save / pabi_state_load (8 bytes, little-endian). */
#include "pabi.h"

static uint64_t count;

PABI_FUNCTION(counter) {
    char digits[20];
    count++;
    return pabi_output(digits, pabi_format_u64(digits, count)) == 0 ? PABI_OK
                                                                     : pabi_error(PABI_FAILED, "output_write failed");
}

PABI_STATE_SAVE {
    uint8_t state[8];
    for (int i = 0; i < 8; i++) state[i] = (uint8_t)(count >> (8 * i));
    return pabi_output(state, 8) == 0 ? PABI_OK : pabi_error(PABI_FAILED, "output_write failed");
}

PABI_STATE_LOAD {
    if (state_len != 8) {
        static const char prefix[] = "counter state needs exactly 8 bytes, got ";
        char message[sizeof prefix + 20];
        __builtin_memcpy(message, prefix, sizeof prefix - 1);
        uint32_t n = (uint32_t)sizeof prefix - 1;
        n += pabi_format_u64(message + n, state_len);
        pabi_error_write(message, n);
        return PABI_INVALID_INPUT;
    }
    uint8_t state[8];
    pabi_input_copy(state, 8);
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) value |= (uint64_t)state[i] << (8 * i);
    count = value;
    return PABI_OK;
}
