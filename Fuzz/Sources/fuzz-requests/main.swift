import FuzzTargets

/// libFuzzer entry point: one input, `NBDFuzzers.requests`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    NBDFuzzers.requests(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
