// swift-tools-version:6.1
// libFuzzer executables for nvme-nbd. Build and run with scripts/fuzz (it passes
// -sanitize=fuzzer,address -parse-as-library); plain `swift build` of the main package never builds these.
import PackageDescription

let package = Package(
    name: "nvme-nbd-fuzz",
    dependencies: [.package(name: "nvme-nbd", path: "..")],
    targets: [
        .executableTarget(name: "fuzz-handshake", dependencies: [.product(name: "FuzzTargets", package: "nvme-nbd")]),
        .executableTarget(name: "fuzz-requests", dependencies: [.product(name: "FuzzTargets", package: "nvme-nbd")]),
        .executableTarget(name: "fuzz-controller", dependencies: [.product(name: "FuzzTargets", package: "nvme-nbd")]),
    ]
)
