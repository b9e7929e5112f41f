/* The `greet` example plugin: pabi_init takes the greeting prefix from the
 * config ("Hello, " when it is empty); greet returns prefix + input + "!". */
#include "pabi.h"

static const uint8_t *prefix = (const uint8_t *)"Hello, ";
static uint32_t prefix_len = 7;

PABI_INIT {
    if (config_len == 0) return PABI_OK;
    /* Memory allocated in PABI_INIT lives as long as the instance. */
    uint8_t *config = pabi_input(config_len);
    if (!config) return pabi_error(PABI_OUT_OF_MEMORY, "cannot allocate memory for the config");
    prefix = config;
    prefix_len = config_len;
    return PABI_OK;
}

PABI_FUNCTION(greet) {
    const uint8_t *name = pabi_input(input_len);
    if (!name) return pabi_error(PABI_OUT_OF_MEMORY, "cannot allocate memory for the input");
    if (pabi_output(prefix, prefix_len) != 0 || pabi_output(name, input_len) != 0 || pabi_output_str("!") != 0)
        return pabi_error(PABI_FAILED, "output_write failed");
    return PABI_OK;
}
