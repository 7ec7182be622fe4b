import CFuzzerDriver
import Glibc
import FuzzTargets

// libFuzzer runs `ControllerFuzzer.run` on each input; libFuzzer's own flags come from argv.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    ControllerFuzzer.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
exit(status)
