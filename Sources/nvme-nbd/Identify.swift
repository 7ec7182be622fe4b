import ArgumentParser
import Foundation
import NBDServer
import NIOPosix
import NVMe
import NVMeHost

struct Identify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Bring each export's emulated controller up and print its Identify data, named as `nvme id-ctrl` and `nvme id-ns` name the fields."
    )

    @OptionGroup var exportOptions: ExportOptionsGroup

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        for spec in try exportOptions.specs() {
            let export: Export
            do {
                export = try Export(
                    spec: spec, loops: Array(group.makeIterator()), options: exportOptions.exportOptions())
            } catch {
                FileHandle.standardError.write(Data("nvme-nbd: \(error)\n".utf8))
                throw ExitCode(1)
            }
            defer { export.close() }
            print("# \(spec.summary)")
            print(try IdentifyReport.render(driver: export.driver))
        }
    }
}

/// Prints Identify Controller / Namespace fields with nvme-cli's names.
enum IdentifyReport {
    static func render(driver: NVMeDriver) throws -> String {
        guard let buffer = DMABuffer(memory: driver.memory, byteCount: 4096) else { return "no DMA memory" }
        let data = QueuePair.DataPages(buffer: buffer, first: 0, count: 1)
        try driver.adminCommand(SubmissionQueueEntry(opcode: AdminOpcode.identify.rawValue, cdw10: 1), data: data)
        let c = buffer.bytes()
        let id = IdentifyController(decoding: c)
        var out = "NVME Identify Controller:\n"
        for (k, v) in id.report { out += k.padding(toLength: 10, withPad: " ", startingAt: 0) + ": " + v + "\n" }
        out +=
            "  oacs bit 8 (Doorbell Buffer Config): \(id.supportsDoorbellBufferConfig ? "supported" : "not supported")\n"
        for ns in driver.namespaces {
            try driver.adminCommand(
                SubmissionQueueEntry(opcode: AdminOpcode.identify.rawValue, namespaceIdentifier: ns.id, cdw10: 0),
                data: data)
            let n = IdentifyNamespace(decoding: buffer.bytes())
            out += "\nNVME Identify Namespace \(ns.id):\n"
            for (k, v) in n.report { out += k.padding(toLength: 8, withPad: " ", startingAt: 0) + ": " + v + "\n" }
            out += "lbaf  0 : ms:0   lbads:\(n.lbaDataSizeShift)  rp:0 (in use)\n"
        }
        buffer.release()
        return out
    }
}
