import FuzzTargets
import FuzzerMain
import Glibc

// libFuzzer runs `ControllerFuzzer.run` on each input; libFuzzer's own flags come from argv.
exit(
    runLibFuzzer { data, size in
        ControllerFuzzer.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    })
