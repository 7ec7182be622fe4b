import FuzzTargets

/// libFuzzer entry point: one input, `ControllerFuzzer.run`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    ControllerFuzzer.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
