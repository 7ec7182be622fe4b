import FuzzTargets
import FuzzerMain
import Glibc

// libFuzzer runs `NBDFuzzers.requests` on each input; libFuzzer's own flags come from argv.
exit(
    runLibFuzzer { data, size in
        NBDFuzzers.requests(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    })
