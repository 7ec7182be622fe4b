/// How the host driver sets the controller up.
public struct DriverOptions: Sendable {
    /// I/O queue pairs to create (Set Features Number of Queues may grant fewer).
    public var ioQueuePairs: Int = 1
    /// Entries per I/O queue (SQ and CQ); at most `depth - 1` commands are in flight
    /// per pair. Capped by CAP.MQES + 1.
    public var queueDepth: Int = 1024
    /// Entries in the admin queues.
    public var adminQueueDepth: Int = 32
    /// Use Doorbell Buffer Config when the controller advertises it (OACS bit 8), as
    /// Linux does; `false` keeps MMIO doorbells only.
    public var useShadowDoorbells: Bool = true
    /// Who reaps each I/O queue pair's completions when its interrupt fires.
    public var interrupts: @Sendable (_ queueIndex: Int) -> InterruptDelivery = { _ in .dedicatedThread }
    /// Resubmissions of a command that was outstanding across controller resets
    /// (Linux `nvme_max_retries`).
    public var maximumRetries: Int = 5
    /// Admin commands and CSTS.RDY transitions are given this long.
    public var adminTimeoutMilliseconds: Int = 10_000
    /// Called wherever the driver waits for the device (a register to change, an
    /// admin completion), instead of sleeping: tests that drive a stepped device
    /// advance it here (`{ controller.step() }`). `nil`: wait for real.
    public var whileWaiting: (@Sendable () -> Void)? = nil

    public init() {}
}

/// Where a queue pair's interrupt goes.
public enum InterruptDelivery: Sendable {
    /// A host thread per queue pair sleeps on the interrupt and reaps.
    case dedicatedThread
    /// Called on the controller's thread when the interrupt fires; it must not block
    /// and must arrange for ``QueuePair/processCompletions()`` to run (for example on
    /// an event loop).
    case custom(@Sendable (QueuePair) -> Void)
    /// Nothing is connected: the owner calls ``QueuePair/processCompletions()``.
    case polled
}
