import Agent
import Testing

/// The agent's debounce and flood back-off, driven with explicit instants (nanoseconds).
struct DebouncerTests {
    static let ms: UInt64 = 1_000_000
    /// The agent's defaults: 5 ms quiet, 100 ms at most, up to 1 s in a flood.
    func make() -> Debouncer { Debouncer(quietSeconds: 0.005, shortestSeconds: 0.100, ceilingSeconds: 1.0) }

    @Test func aBurstIsOneReconcileOnceQuiet() {
        var d = make()
        let t0 = 10_000 * Self.ms
        #expect(d.deadline == nil && d.due(at: t0) == nil)
        for i in 0..<10 { d.note(i == 3 ? .link : .route, at: t0 + UInt64(i) * Self.ms) }
        // 1 ms apart: never quiet for 5 ms until the last one; due 5 ms after it.
        #expect(d.deadline == t0 + 9 * Self.ms + 5 * Self.ms)
        #expect(d.due(at: t0 + 13 * Self.ms) == nil)
        #expect(d.due(at: t0 + 14 * Self.ms) == .link)   // the most important trigger of the burst
        #expect(d.pending == nil && d.due(at: t0 + 20 * Self.ms) == nil)
        #expect(d.longest == 100 * Self.ms)
    }

    @Test func aFloodDoublesTheDelayUpToTheCeilingAndQuietResetsIt() {
        var d = make()
        var now = 10_000 * Self.ms
        var delays: [UInt64] = []
        for _ in 0..<6 {
            // Events every 1 ms, without end: each burst is cut short by `longest`.
            let start = now
            while d.due(at: now) == nil {
                d.note(.rule, at: now)
                now += Self.ms
            }
            delays.append((now - start) / Self.ms)
        }
        #expect(d.longest == 1000 * Self.ms)
        // 100 ms, then doubling: each burst lasted its limit (give or take the 1 ms step).
        #expect(delays.map { $0 / 10 * 10 } == [100, 200, 400, 800, 1000, 1000], "\(delays)")
        // One burst that ends quietly: back to 100 ms.
        d.note(.route, at: now)
        #expect(d.due(at: now + 5 * Self.ms) == .route)
        #expect(d.longest == 100 * Self.ms)
    }

    @Test func theCeilingIsNeverBelowTheShortestDelay() {
        let d = Debouncer(quietSeconds: 0.005, shortestSeconds: 0.100, ceilingSeconds: 0.010)
        #expect(d.ceiling == 100 * Self.ms && d.longest == 100 * Self.ms)
    }

    @Test func immediateTriggersAreDueAtOnceAndChangeNoDelay() {
        var d = make()
        let t0 = 10_000 * Self.ms
        d.note(.route, at: t0)
        d.note(.sighup, at: t0 + Self.ms, immediate: true)
        #expect(d.deadline == 0)
        #expect(d.due(at: t0 + Self.ms) == min(Trigger.route, Trigger.sighup))
        #expect(d.longest == 100 * Self.ms)
    }
}
