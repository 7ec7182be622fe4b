import NVMe
import TestSupport
import Testing

/// Byte vectors and round trips for the queue entries and identify structures.
@Suite struct WireFormatTests {
    @Test func submissionEntryBytes() {
        var e = SubmissionQueueEntry(
            opcode: 0x02, commandIdentifier: 0xBEEF, namespaceIdentifier: 1,
            prp1: 0x1_0000_1000, prp2: 0x1_0000_2000, cdw12: 7)
        e.startingLBA = 0x1122_3344_5566_7788
        let b = e.bytes
        #expect(b.count == 64)
        #expect(Array(b[0..<4]) == [0x02, 0x00, 0xEF, 0xBE])  // CDW0: opcode, flags, CID
        #expect(Array(b[4..<8]) == [1, 0, 0, 0])  // NSID
        #expect(Array(b[24..<32]) == [0x00, 0x10, 0x00, 0x00, 0x01, 0, 0, 0])  // PRP1
        #expect(Array(b[40..<48]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])  // SLBA
        #expect(Array(b[48..<52]) == [7, 0, 0, 0])  // NLB 0-based
        #expect(SubmissionQueueEntry(b) == e)
    }

    @Test(arguments: 0..<200)
    func submissionEntryRoundTrip(_ index: Int) {
        let seed = TestSeed.fixed(UInt64(index))
        var rng = seed.generator()
        var e = SubmissionQueueEntry(opcode: UInt8.random(in: 0...255, using: &rng))
        e.flags = UInt8.random(in: 0...255, using: &rng)
        e.commandIdentifier = UInt16.random(in: 0...UInt16.max, using: &rng)
        e.namespaceIdentifier = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[2] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[3] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.metadataPointer = rng.next()
        e.prp1 = rng.next()
        e.prp2 = rng.next()
        e.dwords[10] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[11] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[12] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[13] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[14] = UInt32.random(in: 0...UInt32.max, using: &rng)
        e.dwords[15] = UInt32.random(in: 0...UInt32.max, using: &rng)
        #expect(SubmissionQueueEntry(e.bytes) == e, "\(seed)")
    }

    @Test func completionEntryBytes() {
        let e = CompletionQueueEntry(
            dw0: 0xA1B2_C3D4, submissionQueueHead: 0x0102, submissionQueueIdentifier: 3,
            commandIdentifier: 0x0405, phase: true, status: .lbaOutOfRange)
        let b = e.bytes
        #expect(Array(b[0..<4]) == [0xD4, 0xC3, 0xB2, 0xA1])
        #expect(Array(b[8..<12]) == [0x02, 0x01, 0x03, 0x00])
        // DW3: CID 0x0405, phase 1 at bit 16, status 0x80 (SCT 0) + DNR (bit 14 of the
        // status field) shifted left by 17.
        let dw3 = UInt32(0x0405) | 1 << 16 | UInt32(0x80 | 1 << 14) << 17
        #expect(
            Array(b[12..<16]) == [UInt8(dw3 & 0xFF), UInt8(dw3 >> 8 & 0xFF), UInt8(dw3 >> 16 & 0xFF), UInt8(dw3 >> 24)])
        let decoded = b.withUnsafeBytes { CompletionQueueEntry(bytes: $0) }
        #expect(decoded == e)
        #expect(decoded.status.doNotRetry)
    }

    @Test(arguments: [
        NVMeStatus.success, .invalidField, .dataTransferError, .invalidPRPOffset, .lbaOutOfRange,
        .completionQueueInvalid, .invalidQueueIdentifier, .invalidQueueSize, .invalidQueueDeletion,
        .writeFault, .unrecoveredReadError, .capacityExceeded,
    ])
    func statusFieldRoundTrip(_ s: NVMeStatus) {
        #expect(NVMeStatus(field: s.field) == s)
        #expect(!s.name.hasPrefix("Status SCT"))
    }

    @Test func identifyControllerRoundTrip() {
        var id = IdentifyController()
        id[text: .sn] = "SN123"
        id[.mdts] = 5
        id.supportsDoorbellBufferConfig = false
        id[.nn] = 3
        let b = id.encode()
        #expect(b.count == 4096)
        #expect(b[77] == 5)
        #expect(b[256] & 0 == 0 && b[257] & 1 == 0)  // OACS bit 8 clear
        #expect(Array(b[4..<9]) == Array("SN123".utf8))
        #expect(b[9] == 0x20)  // space padded
        let d = IdentifyController(decoding: b)
        #expect(d == id && d[text: .sn] == "SN123" && d[.nn] == 3 && d[.vid] == 0x1B36)
        #expect(d[text: .subnqn] == "nqn.2026-11.io.nvme-nbd:controller" && b[768 + 34] == 0)  // NUL padded
        id.supportsDoorbellBufferConfig = true
        #expect(id.encode()[257] & 1 == 1)
    }

    @Test func identifyNamespaceRoundTrip() {
        var ns = IdentifyNamespace()
        ns[.nsze] = 1 << 21
        ns[.ncap] = 1 << 21
        ns[.nuse] = 77
        ns.lbaDataSizeShift = 12
        let b = ns.encode()
        #expect(b[130] == 12)  // LBAF0.LBADS
        #expect(b[33] == 0b1001)  // DLFEAT: zeroes + Write Zeroes deallocate
        let d = IdentifyNamespace(decoding: b)
        #expect(d[.nsze] == 1 << 21 && d[.nuse] == 77 && d.blockSize == 4096)
        #expect(Array(b[0..<8]) == [0, 0, 0x20, 0, 0, 0, 0, 0])  // NSZE little endian
    }

    @Test func doorbellOffsets() {
        #expect(RegisterOffset.doorbell(queue: 0, completion: false, stride: 0) == 0x1000)
        #expect(RegisterOffset.doorbell(queue: 0, completion: true, stride: 0) == 0x1004)
        #expect(RegisterOffset.doorbell(queue: 3, completion: true, stride: 0) == 0x101C)
        #expect(RegisterOffset.doorbell(queue: 3, completion: false, stride: 2) == 0x1000 + 6 * 16)
        for stride in UInt8(0)...3 {
            for q in UInt16(0)..<70 {
                for c in [false, true] {
                    let off = RegisterOffset.doorbell(queue: q, completion: c, stride: stride)
                    let d = RegisterOffset.decodeDoorbell(off, stride: stride)
                    #expect(d?.queue == q && d?.completion == c)
                }
            }
        }
        #expect(RegisterOffset.decodeDoorbell(0x1002, stride: 0) == nil)
        #expect(RegisterOffset.decodeDoorbell(0x0FFC, stride: 0) == nil)
    }

    @Test func allocationMapRoundTrip() {
        let ds = [
            AllocationMapDescriptor(startingLBA: 0, blockCount: 8, deallocated: true),
            AllocationMapDescriptor(startingLBA: 8, blockCount: 100, deallocated: false),
        ]
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buf.deallocate() }
        AllocationMapDescriptor.encode(ds, nextLBA: 108, into: buf)
        let d = AllocationMapDescriptor.decode(UnsafeRawBufferPointer(buf))
        #expect(d?.descriptors == ds && d?.nextLBA == 108)
        #expect(buf[0] == 2 && buf[8] == 108)
    }

    @Test func datasetManagementRange() {
        let r = DatasetManagementRange(
            startingLBA: 0x0102_0304_0506_0708, blockCount: 0x1122_3344, contextAttributes: 5)
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { b.deallocate() }
        r.encode(into: b)
        #expect(Array(b) == [5, 0, 0, 0, 0x44, 0x33, 0x22, 0x11, 8, 7, 6, 5, 4, 3, 2, 1])
        #expect(DatasetManagementRange(bytes: UnsafeRawBufferPointer(b)) == r)
    }
}
