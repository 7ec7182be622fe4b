import NVMe

/// The features Set Features only records and Get Features reports back (NVMe
/// Base Specification 2.0, §5.27.1): each one's default — its value after a reset,
/// and Get Features' answer for select 01b — and the bits of CDW11 it keeps, in
/// one table.
struct StoredFeatures {
    private static let layout: [FeatureIdentifier: (defaultValue: UInt32, mask: UInt32)] = [
        // Arbitration (01h): all of CDW11.
        .arbitration: (0, 0xFFFF_FFFF),
        // Interrupt Coalescing (08h): aggregation time and threshold, bits 15:0.
        .interruptCoalescing: (0, 0xFFFF),
        // Asynchronous Event Configuration (0Bh): all of CDW11.
        .asynchronousEventConfiguration: (0, 0xFFFF_FFFF),
        // Temperature Threshold (04h): bits 15:0, 0157h (343 K) by default.
        .temperatureThreshold: (0x0157, 0xFFFF),
    ]

    private var values: [FeatureIdentifier: UInt32] = layout.mapValues(\.defaultValue)

    /// Whether `feature` is one of these (the others have rules of their own).
    static func isStored(_ feature: FeatureIdentifier) -> Bool { layout[feature] != nil }

    static func defaultValue(_ feature: FeatureIdentifier) -> UInt32 { layout[feature]?.defaultValue ?? 0 }

    /// The value Set Features last recorded (or the default).
    func current(_ feature: FeatureIdentifier) -> UInt32 { values[feature] ?? 0 }

    /// Records the bits of `cdw11` that `feature` keeps.
    mutating func set(_ feature: FeatureIdentifier, _ cdw11: UInt32) {
        guard let mask = Self.layout[feature]?.mask else { return }
        values[feature] = cdw11 & mask
    }
}
