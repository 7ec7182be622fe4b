// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6)
]
/// Targets that hold no unsafe code: the compiler checks it (SE-0458).
let memorySafe: [SwiftSetting] = strict + [.strictMemorySafety()]

/// Products of swift-nio, in the order given.
func nio(_ names: String...) -> [Target.Dependency] {
    names.map { .product(name: $0, package: "swift-nio") }
}
// Computed, not stored: a stored global `Target.Dependency` crashed the 6.3
// manifest runner while it wrote the package out (signal 11 in Set.encode).
var atomics: Target.Dependency { .product(name: "Atomics", package: "swift-atomics") }
var logging: Target.Dependency { .product(name: "Logging", package: "swift-log") }

/// A test target in Swift 6 mode that links the helpers every test target shares.
func tests(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .testTarget(name: name, dependencies: dependencies + ["TestSupport"], swiftSettings: strict)
}

// Linux only: the server and its storage engines use io_uring, eventfd,
// BLKGETSIZE64/BLKDISCARD and Linux's sendmsg/epoll through SwiftNIO; no other
// platform builds (hence no `platforms:` claim).
let package = Package(
    name: "nvme-nbd",
    products: [.executable(name: "nvme-nbd", targets: ["nvme-nbd"])]
        + [
            "NVMe", "NVMeController", "NVMeHost", "PCIe", "NBDProtocol", "NBDServer", "DMA", "ConcurrencyHelpers",
            "BlockBackends", "FuzzTargets", "NBDMetrics",
        ].map { .library(name: $0, targets: [$0]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // The NVMe specification as Swift values: no I/O.
        .target(name: "NVMe", swiftSettings: strict),
        // Locks, the monotonic clock and counter blocks every threaded layer uses.
        .target(
            name: "ConcurrencyHelpers",
            dependencies: [atomics],
            swiftSettings: strict),
        // DMA-able host memory and the atomic accesses the rings and doorbell buffers need.
        .target(
            name: "DMA",
            dependencies: ["ConcurrencyHelpers", atomics],
            swiftSettings: strict),
        // The Linux storage interfaces Swift's Glibc cannot see (built with _GNU_SOURCE):
        // fallocate, pwritev2, O_DIRECT, block-device ioctls, statx DIO alignment, io_uring.
        .target(name: "CLinuxIO"),
        // Service-life system calls (Unix socket probing, sd_notify datagrams, inherited
        // listening sockets, posix_spawn of a captive command) in C, and their typed Swift
        // wrappers: the pointer work stays out of the memory-safe server and CLI targets.
        .target(name: "CService"),
        .target(name: "ServiceLife", dependencies: ["CService"], swiftSettings: strict),
        // Namespace storage: sparse memory and regular files / block devices, and the
        // asynchronous engines (io_uring, worker threads) that run it.
        .target(
            name: "BlockBackends",
            dependencies: [
                "DMA", "ConcurrencyHelpers", "CLinuxIO", .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        // The seam between driver and device: a PCI function (BAR0, MSI-X).
        .target(name: "PCIe", swiftSettings: strict),
        // The emulated device.
        .target(
            name: "NVMeController",
            dependencies: [
                "NVMe", "DMA", "ConcurrencyHelpers", "PCIe", "BlockBackends",
                atomics,
            ],
            swiftSettings: strict),
        // The driver: it sees a PCI function and its own memory, never the device.
        .target(
            name: "NVMeHost",
            dependencies: [
                "NVMe", "DMA", "ConcurrencyHelpers", "PCIe",
                atomics,
            ],
            swiftSettings: strict),
        // NBD wire format and handshake as pure state machines over bytes.
        .target(name: "NBDProtocol", dependencies: nio("NIOCore"), swiftSettings: memorySafe),
        // DMA to and from SwiftNIO byte buffers: the one place pointers into them escape.
        .target(name: "ByteBufferDMA", dependencies: ["DMA", "NVMeHost"] + nio("NIOCore"), swiftSettings: strict),
        // SwiftNIO server binding NBD connections to NVMe host queue pairs.
        .target(
            name: "NBDServer",
            dependencies: [
                "NBDProtocol", "NVMe", "NVMeHost", "NVMeController", "BlockBackends", "DMA", "ConcurrencyHelpers",
                "ByteBufferDMA", "CLinuxIO", "ServiceLife",
            ] + nio("NIOCore", "NIOPosix") + [.product(name: "NIOSSL", package: "swift-nio-ssl")] + nio("NIOTLS")
                + [logging],
            swiftSettings: memorySafe),
        // Prometheus metrics over HTTP (`--metrics`) and the client side `nvme-nbd top`
        // reads them with: kept apart so NBDServer does not depend on Prometheus.
        .target(
            name: "NBDMetrics",
            dependencies: [
                "NBDServer", "NVMeController", "NVMeHost", "ConcurrencyHelpers",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ] + nio("NIOCore", "NIOPosix", "NIOHTTP1") + [logging],
            swiftSettings: memorySafe),
        .executableTarget(
            name: "nvme-nbd",
            dependencies: [
                "NBDServer", "NVMe", "NVMeController", "NVMeHost", "BlockBackends", "ServiceLife",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), "NBDMetrics", logging,
                .product(
                    name: "ServiceLifecycle", package: "swift-service-lifecycle",
                    moduleAliases: ["ConcurrencyHelpers": "LifecycleConcurrencyHelpers"]),
                .product(
                    name: "UnixSignals", package: "swift-service-lifecycle",
                    moduleAliases: ["ConcurrencyHelpers": "LifecycleConcurrencyHelpers"]),
            ] + nio("NIOCore", "NIOPosix"),
            swiftSettings: memorySafe),
        // Fuzz entry points: libFuzzer executables in Fuzz/ and the corpus replay tests call them.
        .target(
            name: "FuzzTargets",
            dependencies: ["NBDProtocol", "NVMe", "NVMeController", "DMA", "BlockBackends"] + nio("NIOCore"),
            swiftSettings: strict),
        // libnbd, for tests and benchmarks only: the server never links it.
        .systemLibrary(name: "CNBD", pkgConfig: "libnbd", providers: [.apt(["libnbd-dev"])]),

        .executableTarget(
            name: "shadow-doorbell-demo",
            dependencies: ["NVMeHost", "NVMeController", "BlockBackends", "NVMe", "ConcurrencyHelpers"],
            path: "examples/shadow-doorbell-demo", swiftSettings: strict),

        .executableTarget(
            name: "storage-engine-bench", dependencies: ["BlockBackends"],
            path: "examples/storage-engine-bench", swiftSettings: strict),

        // Helpers every test target shares (a seeded generator); `tests` adds it.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        tests("NVMeTests", ["NVMe"]),
        tests("BlockBackendsTests", ["BlockBackends", "CLinuxIO", "DMA", "ConcurrencyHelpers"]),
        tests(
            "NVMeControllerTests", ["NVMe", "DMA", "ConcurrencyHelpers", "NVMeController", "NVMeHost", "BlockBackends"]),
        tests("NVMeHostTests", ["NVMe", "DMA", "ConcurrencyHelpers", "NVMeController", "NVMeHost", "BlockBackends"]),
        tests("FuzzRegressionTests", ["FuzzTargets"]),
        tests("NBDProtocolTests", ["NBDProtocol"] + nio("NIOCore", "NIOTestUtils")),
        tests("NBDMetricsTests", ["NBDMetrics", "NBDServer", "NBDProtocol"] + nio("NIOCore", "NIOPosix") + [logging]),
        tests(
            "NBDServerTests",
            [
                "NBDServer", "NBDProtocol", "CNBD", "ServiceLife", "NVMeController", "NVMeHost", "BlockBackends", "DMA",
                "ConcurrencyHelpers",
            ] + nio("NIOCore", "NIOPosix") + [logging]),
    ]
)
