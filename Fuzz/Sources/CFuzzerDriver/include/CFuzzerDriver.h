#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver, for executables that bring their own main (SwiftPM
/// executables always do): parses libFuzzer's flags from argv and runs `callback`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
