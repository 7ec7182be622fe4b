import ConcurrencyHelpers
import DMA
import NBDProtocol
import NVMe
import NVMeHost

/// Serialises read-modify-write of partial blocks across the connections of an
/// export, so two unaligned writes into the same block cannot lose each other's
/// bytes.
final class RMWGate: @unchecked Sendable {
    private let lock = ConditionMutex()
    private var busy = false
    private var waiters: [@Sendable () -> Void] = []

    /// Runs `body` now or once the gate is free; `body` must call ``release()``.
    func acquire(_ body: @escaping @Sendable () -> Void) {
        let now: Bool = lock.withLock {
            if busy { waiters.append(body); return false }
            busy = true
            return true
        }
        if now { body() }
    }

    func release() {
        let next: (@Sendable () -> Void)? = lock.withLock {
            if waiters.isEmpty { busy = false; return nil }
            return waiters.removeFirst()
        }
        next?()
    }
}

/// One step of a request carried out as several NVMe commands in a row.
typealias NVMeStep = @Sendable (@escaping QueuePair.RequestCompletion) -> Void

/// Runs asynchronous steps one after another; stops at the first failure.
func runSequentially(_ steps: ArraySlice<NVMeStep>, completion: @escaping QueuePair.RequestCompletion) {
    guard let first = steps.first else { return completion(.success(())) }
    let rest = steps.dropFirst()
    first { result in
        if case .failure = result { return completion(result) }
        runSequentially(rest, completion: completion)
    }
}

/// Reads the whole span, lets `fill` change it, writes it back — under the
/// export's read-modify-write gate so partial-block writes do not lose each
/// other's bytes. Releases `buffer` when done.
func readModifyWrite(
    _ s: NBDBlockSpan, gate: RMWGate, queuePair qp: QueuePair, fua: Bool,
    fill: @escaping @Sendable (DMABuffer) -> Void, buffer: DMABuffer,
    completion: @escaping QueuePair.RequestCompletion
) {
    gate.acquire {
        qp.transfer(.read(into: buffer), lba: s.lba, blocks: s.blocks) { result in
            if case .failure = result {
                buffer.release()
                gate.release()
                return completion(result)
            }
            fill(buffer)
            qp.transfer(.write(from: buffer), lba: s.lba, blocks: s.blocks, fua: fua) { result in
                buffer.release()
                gate.release()
                completion(result)
            }
        }
    }
}

/// Zeroes the bytes `range` (inside the partial blocks of one span) by
/// read-modify-write.
func zeroPartial(
    _ range: Range<UInt64>, blockShift: Int, memory: HostMemory, gate: RMWGate, queuePair: QueuePair,
    fua: Bool, _ done: @escaping QueuePair.RequestCompletion
) {
    let s = NBDBlockSpan(offset: range.lowerBound, length: UInt64(range.count), blockShift: blockShift)
    guard let buffer = DMABuffer(memory: memory, byteCount: s.bytes) else {
        return done(.failure(NVMeError(.outOfDMAMemory(bytes: s.bytes), operation: "write zeroes")))
    }
    let head = s.head, count = range.count
    readModifyWrite(
        s, gate: gate, queuePair: queuePair, fua: fua, fill: { b in b.zero(at: head, count: count) },
        buffer: buffer, completion: done)
}
