import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A loop block device (`losetup`) over a backing file, detached when the
/// object goes. Attaching needs root and loop support; where either is missing
/// ``attach(_:)`` says why, so a test can report a skip with the reason.
public final class LoopDevice: Sendable {
    public let path: String
    private let losetup: String

    private init(path: String, losetup: String) {
        self.path = path
        self.losetup = losetup
    }

    deinit { _ = runProcess(losetup, ["--detach", path]) }

    /// `/sys/block/loopN/queue/NAME`, as the kernel reports it.
    public func queueAttribute(_ name: String) -> String? {
        let device = path.split(separator: "/").last.map(String.init) ?? ""
        return (try? String(contentsOfFile: "/sys/block/\(device)/queue/\(name)", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Attaches `backingFile`; `.failure` carries the reason it could not.
    public static func attach(
        _ backingFile: String, directIO: Bool = false,
        sectorSize: Int? = nil
    ) -> Result<LoopDevice, LoopDeviceUnavailable> {
        guard geteuid() == 0 else { return .failure(LoopDeviceUnavailable(reason: "loop devices need root")) }
        guard
            let losetup = ["/usr/sbin/losetup", "/sbin/losetup", "/usr/bin/losetup"]
                .first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            return .failure(LoopDeviceUnavailable(reason: "losetup is not installed"))
        }
        let (status, output) = runProcess(
            losetup,
            ["--find", "--show"] + (directIO ? ["--direct-io=on"] : [])
                + (sectorSize.map { ["--sector-size", "\($0)"] } ?? []) + [backingFile])
        let device = output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0, device.hasPrefix("/dev/") else {
            return .failure(LoopDeviceUnavailable(reason: "losetup could not attach a loop device (status \(status))"))
        }
        return .success(LoopDevice(path: device, losetup: losetup))
    }

}

/// Why no loop device could be had.
public struct LoopDeviceUnavailable: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

/// Runs a program, returning (exit status, standard output).
public func runProcess(_ executable: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return (-1, "") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
