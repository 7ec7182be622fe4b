import NBDProtocol

/// What the transmission state machine asks of the connection: writability,
/// the server's shutdown flag, and room in the memory budget — a connection
/// that holds none of it may always start one request.
struct ConnectionConditions: NBDTransmissionEnvironment {
    let isWritable: Bool
    let serverShuttingDown: Bool
    let budget: ServerMemoryBudget
    let waiter: Int
    let wake: @Sendable () -> Void
    /// Bytes of the budget the connection holds.
    var held: Int

    mutating func reserve(_ bytes: Int) -> Bool {
        guard budget.reserve(bytes, holdsNothing: held == 0, waiter: waiter, wake: wake) else { return false }
        held += bytes
        return true
    }
}
