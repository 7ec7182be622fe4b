// swift-tools-version:6.1
// libFuzzer executables for nvme-nbd. Build and run them with scripts/fuzz, which
// passes -sanitize=fuzzer,address; a plain `swift build` of the main package never
// builds these. Each executable's main hands argv to libFuzzer's driver.
import PackageDescription

let targets = ["handshake", "requests", "controller"]

let package = Package(
    name: "nvme-nbd-fuzz",
    dependencies: [.package(name: "nvme-nbd", path: "..")],
    targets: [.target(name: "CFuzzerDriver")] + targets.map {
        .executableTarget(name: "fuzz-\($0)",
                          dependencies: ["CFuzzerDriver", .product(name: "FuzzTargets", package: "nvme-nbd")],
                          swiftSettings: [.swiftLanguageMode(.v6)])
    }
)
