import CFuzzerDriver
import Glibc
import FuzzTargets

// libFuzzer runs `NBDFuzzers.requests` on each input; libFuzzer's own flags come from argv.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    NBDFuzzers.requests(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
exit(status)
