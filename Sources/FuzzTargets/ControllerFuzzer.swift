import BlockBackends
import DMA
import NVMe
import NVMeController

/// Fuzz entry point for the emulated controller: a stepped controller with a
/// small arena, an enabled admin queue, and the input read as a program of
/// operations — submission entries (raw, or with their queue and data pointers
/// steered into the arena), raw register and doorbell writes, shadow doorbell and
/// EventIdx stores, arbitrary memory writes (PRP lists), steps, resets. Whatever
/// the program, the controller must not crash or loop without bound.
public enum ControllerFuzzer {
    static let arenaBytes = 4 << 20
    static let queueEntries = 16
    /// Fixed, page-aligned places in the contiguous zone.
    static func queueBase(_ qid: Int, completion: Bool) -> UInt64 {
        HostMemory.busBase + UInt64((2 * qid + (completion ? 1 : 0)) * 4096)
    }
    static let shadowPage = HostMemory.busBase + 64 * 4096
    static let eventIndexPage = HostMemory.busBase + 65 * 4096
    static let dataBase = HostMemory.busBase + 80 * 4096

    struct Reader {
        var data: UnsafeRawBufferPointer
        var offset = 0
        var isEmpty: Bool { offset >= data.count }
        mutating func byte() -> UInt8 {
            guard offset < data.count else { return 0 }
            defer { offset += 1 }
            return data[offset]
        }
        mutating func u16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }
        mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
        mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    }

    public static func run(_ data: UnsafeRawBufferPointer) {
        guard let memory = try? HostMemory(byteCount: arenaBytes, contiguousBytes: arenaBytes / 2),
            let backend = try? MemoryBackend(byteCount: 1 << 20),
            let ns = try? Namespace(backend: backend, blockSize: data.first.map { $0 & 1 == 0 ? 512 : 4096 } ?? 512)
        else { return }
        var options = ControllerOptions()
        options.maximumQueueEntries = 64
        options.maximumIOQueuePairs = 4
        options.maximumDataTransferSize = 3
        options.interruptVectors = 8
        guard
            let controller = try? EmulatedController(memory: memory, namespaces: [ns], options: options, stepped: true)
        else { return }
        // Enable with a 16-entry admin queue pair.
        controller.write32(
            bar0: RegisterOffset.aqa,
            AdminQueueAttributes(
                submissionQueueSize0: UInt16(queueEntries - 1), completionQueueSize0: UInt16(queueEntries - 1)
            ).raw)
        controller.write64(bar0: RegisterOffset.asq, queueBase(0, completion: false))
        controller.write64(bar0: RegisterOffset.acq, queueBase(0, completion: true))
        let enable = ControllerConfiguration(
            enable: true, memoryPageSize: 0, ioSubmissionQueueEntrySize: 6,
            ioCompletionQueueEntrySize: 4
        ).raw
        controller.write32(bar0: RegisterOffset.cc, enable)
        controller.step()

        var tails = [Int](repeating: 0, count: 5)
        var r = Reader(data: data)
        var operations = 0
        while !r.isEmpty && operations < 2000 {
            operations += 1
            switch r.byte() % 10 {
            case 0, 1, 2:
                // A submission entry for queue q, steered or raw.
                let q = Int(r.byte() % 5)
                let steer = r.byte()
                var bytes = [UInt8](repeating: 0, count: 64)
                for i in 0..<64 { bytes[i] = r.byte() }
                var e = SubmissionQueueEntry(bytes)
                if steer & 1 != 0 {
                    e.prp1 = dataBase + UInt64(r.byte()) * 4096 + (steer & 2 != 0 ? UInt64(r.byte()) * 4 : 0)
                    e.prp2 = dataBase + UInt64(r.byte()) * 4096
                }
                if q == 0 && steer & 4 != 0 {
                    // Make queue-creation commands name the fixed queue memory.
                    let qid = Int(e.dwords[10] & 0x3) + 1
                    if e.opcode == 0x05 || e.opcode == 0x01 {
                        e.dwords[10] = (e.dwords[10] & 0xFFFF_0000) | UInt32(qid)
                        if steer & 8 != 0 { e.dwords[10] = UInt32(queueEntries - 1) << 16 | UInt32(qid) }
                        e.prp1 = queueBase(qid, completion: e.opcode == 0x05)
                        if e.opcode == 0x01 && steer & 16 != 0 { e.dwords[11] = UInt32(qid) << 16 | 1 }
                        if e.opcode == 0x05 && steer & 16 != 0 { e.dwords[11] = UInt32(qid) << 16 | 3 }
                    } else if e.opcode == 0x7C {
                        e.prp1 = shadowPage
                        e.prp2 = eventIndexPage
                    }
                }
                if steer & 32 != 0 { e.flags = 0 }
                let address = queueBase(q, completion: false) + UInt64(tails[q] * 64)
                _ = memory.write(e.bytes, at: address)
                tails[q] = (tails[q] + 1) % queueEntries
                if steer & 64 == 0 {
                    controller.write32(
                        bar0: RegisterOffset.doorbell(queue: UInt16(q), completion: false, stride: 0), UInt32(tails[q]))
                }
            case 3:
                // A raw register or doorbell write anywhere in BAR0.
                let offset = UInt32(r.u16()) & ~3
                controller.write32(bar0: offset, r.u32())
            case 4:
                // A shadow doorbell or EventIdx store.
                let page = r.byte() & 1 == 0 ? shadowPage : eventIndexPage
                let word = UInt64(r.byte() % 64) * 4
                memory.word(at: page + word)?.storeRelease(r.u32() % 80)
            case 5:
                // Arbitrary bytes in the data area (PRP lists, DSM ranges).
                let at = dataBase + UInt64(r.u16()) % UInt64(200 * 4096)
                var bytes = [UInt8](repeating: 0, count: Int(r.byte() % 64) + 1)
                for i in bytes.indices { bytes[i] = r.byte() }
                _ = memory.write(bytes, at: at)
            case 6, 7:
                controller.step()
            case 8:
                controller.runUntilIdle(maximumSteps: 64)
            default:
                // Reset, maybe followed by a new enable.
                controller.write32(bar0: RegisterOffset.cc, 0)
                controller.step()
                tails = [Int](repeating: 0, count: 5)
                if r.byte() & 1 == 0 {
                    controller.write32(bar0: RegisterOffset.cc, enable)
                    controller.step()
                }
            }
        }
        controller.runUntilIdle(maximumSteps: 256)
    }
}
