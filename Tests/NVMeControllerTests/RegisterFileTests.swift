import NVMe
import Testing

@testable import NVMeController

/// BAR0 as the host sees it: what a write records and what a read returns.
@Suite struct RegisterFileTests {
    static func file() -> RegisterFile {
        RegisterFile(
            capabilities: ControllerCapabilities(
                maximumQueueEntries0: 1023, contiguousQueuesRequired: true, timeout500ms: 15, doorbellStride: 0,
                nvmCommandSet: true, memoryPageSizeMinimum: 0, memoryPageSizeMaximum: 0), version: .v1_3)
    }

    @Test func sixtyFourBitRegistersByHalvesAndWhole() {
        var r = Self.file()
        r.record(RegisterWrite(offset: RegisterOffset.asq, value: 0x1234_5000, width: 4))
        r.record(RegisterWrite(offset: RegisterOffset.asq + 4, value: 0x1, width: 4))
        #expect(r.read(offset: RegisterOffset.asq, width: 8) == 0x1_1234_5000)
        #expect(r.read(offset: RegisterOffset.asq + 4, width: 4) == 1)
        r.record(RegisterWrite(offset: RegisterOffset.acq, value: 0xAB_CDEF_0000, width: 8))
        #expect(r.read(offset: RegisterOffset.acq, width: 4) == 0xCDEF_0000)
        #expect(r.read(offset: RegisterOffset.acq + 4, width: 4) == 0xAB)
        #expect(r.read(offset: RegisterOffset.cap, width: 8) & 0xFFFF == 1023)
        #expect(r.read(offset: RegisterOffset.vs, width: 4) == 0x0001_0300)
    }

    @Test func readOnlyAndReservedBitsIgnored() {
        var r = Self.file()
        r.record(RegisterWrite(offset: RegisterOffset.csts, value: 0xFFFF_FFFF, width: 4))
        #expect(r.read(offset: RegisterOffset.csts, width: 4) == 0)
        r.record(RegisterWrite(offset: RegisterOffset.cap, value: 0, width: 8))
        #expect(r.read(offset: RegisterOffset.cap, width: 8) != 0)
        r.record(RegisterWrite(offset: RegisterOffset.aqa, value: 0xFFFF_FFFF, width: 4))
        #expect(r.read(offset: RegisterOffset.aqa, width: 4) == 0x0FFF_0FFF)
        #expect(r.read(offset: 0x1000, width: 4) == 0)  // doorbells read as 0
        r.record(RegisterWrite(offset: RegisterOffset.intms, value: 0b101, width: 4))
        r.record(RegisterWrite(offset: RegisterOffset.intmc, value: 0b001, width: 4))
        #expect(r.read(offset: RegisterOffset.intms, width: 4) == 0b100)
    }
}
