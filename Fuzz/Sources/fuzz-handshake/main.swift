import FuzzTargets
import FuzzerMain
import Glibc

// libFuzzer runs `NBDFuzzers.handshake` on each input; libFuzzer's own flags come from argv.
exit(
    runLibFuzzer { data, size in
        NBDFuzzers.handshake(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    })
