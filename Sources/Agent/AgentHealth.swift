import Dispatch
import Synchronization

/// What /healthz and /readyz answer, shared between the event loop thread and the HTTP server.
public final class AgentHealth: Sendable {
    struct State {
        var loopRunning = false
        /// When the loop started its current reconcile (nil while it waits for events).
        var busySince: UInt64?
        var firstApplySucceeded = false
        var lastReconcileFailed = false
        var lastError: String?
        /// Policy entries that do not resolve on this node (left out).
        var unresolved: [String] = []
    }

    private let state = Mutex(State())
    /// A reconcile that runs longer than this means the loop is stuck.
    public static let stuckAfter: Double = 60

    public init() {}

    func loop(running: Bool) { state.withLock { $0.loopRunning = running } }
    func busy(_ busy: Bool) { state.withLock { $0.busySince = busy ? DispatchTime.now().uptimeNanoseconds : nil } }
    func succeeded() {
        state.withLock {
            $0.firstApplySucceeded = true
            $0.lastReconcileFailed = false
            $0.lastError = nil
        }
    }
    func failed(_ message: String) {
        state.withLock {
            $0.lastReconcileFailed = true
            $0.lastError = message
        }
    }

    func unresolved(_ problems: [String]) { state.withLock { $0.unresolved = problems } }

    /// /healthz: the event loop runs and is not stuck in one reconcile.
    public var alive: (ok: Bool, reason: String) {
        state.withLock { s in
            guard s.loopRunning else { return (false, "the event loop is not running") }
            if let since = s.busySince {
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e9
                if seconds > Self.stuckAfter { return (false, "one reconcile has run for \(Int(seconds)) s") }
            }
            return (true, "ok")
        }
    }

    /// /readyz: the first apply succeeded, the last reconcile did not fail, and every policy entry resolves.
    public var ready: (ok: Bool, reason: String) {
        state.withLock { s in
            if !s.firstApplySucceeded { return (false, "no apply has succeeded yet" + (s.lastError.map { ": \($0)" } ?? "")) }
            if s.lastReconcileFailed { return (false, "the last reconcile failed" + (s.lastError.map { ": \($0)" } ?? "")) }
            if !s.unresolved.isEmpty {
                return (false, "policy entries do not resolve on this node (left out): " + s.unresolved.joined(separator: "; "))
            }
            return (true, "ok")
        }
    }
}
