// swift-tools-version:6.1
// libFuzzer executables for nvme-nbd. Build and run them with scripts/fuzz, which
// passes -sanitize=fuzzer,address; a plain `swift build` of the main package never
// builds these. Each executable's main hands argv to libFuzzer's driver (FuzzerMain).
import PackageDescription

let targets = ["handshake", "requests", "controller"]

let package = Package(
    name: "nvme-nbd-fuzz",
    dependencies: [.package(name: "nvme-nbd", path: "..")],
    targets: [
        .target(name: "CFuzzerDriver"),
        .target(name: "FuzzerMain", dependencies: ["CFuzzerDriver"], swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
        + targets.map {
            .executableTarget(
                name: "fuzz-\($0)",
                dependencies: ["FuzzerMain", .product(name: "FuzzTargets", package: "nvme-nbd")],
                swiftSettings: [.swiftLanguageMode(.v6)])
        }
)
