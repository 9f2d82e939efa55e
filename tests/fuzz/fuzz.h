#pragma once
/* The libFuzzer entry point every harness defines; replay.c drives it without libFuzzer. */
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
