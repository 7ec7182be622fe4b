import FuzzTargets

/// libFuzzer entry point: one input, `NBDFuzzers.handshake`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    NBDFuzzers.handshake(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
