import CFuzzerDriver

/// What every fuzz executable's `main` does: hands argv to libFuzzer's driver,
/// which parses libFuzzer's own flags and calls `target` on each input (data and
/// size; `target` returns 0). Returns the driver's exit status, for `exit`.
public func runLibFuzzer(_ target: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32 {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&argc, &argv, target)
}
