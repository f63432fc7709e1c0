/// When the agent reconciles after events: a burst of events is one reconcile, run once no event came for `quiet`
/// or `longest` after the burst's first event, whichever is first. A burst cut short by `longest` while events still
/// came is a flood: the next one may last twice as long, up to `ceiling`; the first burst that ends quietly resets
/// it to `shortest`. Some triggers (SIGHUP, a new policy, a reopened event socket) are due at once and change
/// neither.
///
/// A value with explicit instants (monotonic nanoseconds), so it is tested without a clock or a kernel.
public struct Debouncer: Sendable, Equatable {
    public let quiet: UInt64
    public let shortest: UInt64
    public let ceiling: UInt64
    /// How long the current burst may last before it is reconciled anyway.
    public private(set) var longest: UInt64
    /// The trigger the next reconcile reports (the most important of the burst), nil when nothing is pending.
    public private(set) var pending: Trigger?
    private var firstEvent: UInt64 = 0
    private var lastEvent: UInt64 = 0

    /// Seconds → nanoseconds; `ceiling` is at least `shortest`.
    public init(quietSeconds: Double, shortestSeconds: Double, ceilingSeconds: Double) {
        quiet = UInt64(quietSeconds * 1e9)
        shortest = UInt64(shortestSeconds * 1e9)
        ceiling = max(UInt64(ceilingSeconds * 1e9), shortest)
        longest = shortest
    }

    /// An event (or a request) at `now`. `immediate`: due at once, whatever the burst.
    public mutating func note(_ trigger: Trigger, at now: UInt64, immediate: Bool = false) {
        if pending == nil { firstEvent = now }
        pending = min(pending ?? trigger, trigger)
        lastEvent = now
        if immediate { firstEvent = 0 }
    }

    /// When the pending reconcile is due; nil when nothing is pending.
    public var deadline: UInt64? {
        guard pending != nil else { return nil }
        return immediate ? 0 : min(firstEvent &+ longest, lastEvent &+ quiet)
    }

    private var immediate: Bool { firstEvent == 0 }

    /// The trigger to reconcile at `now`, if the pending one is due (it is then no longer pending). A burst that
    /// ended quietly resets the delay; one cut short doubles it.
    public mutating func due(at now: UInt64) -> Trigger? {
        guard let trigger = pending, let deadline, now >= deadline else { return nil }
        if !immediate {
            // Cut short by `longest` while events still came: a flood, the next burst may last longer.
            longest = now >= lastEvent &+ quiet ? shortest : min(longest * 2, ceiling)
        }
        pending = nil
        return trigger
    }
}
