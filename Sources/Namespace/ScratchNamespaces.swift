import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Throwaway namespaces for benchmarks and demos: named rp-<tag><pid>-<suffix>, removed by `removeAll()`, and
/// also when the process is interrupted (SIGINT, SIGTERM, SIGHUP), so nothing is left behind.
public final class ScratchNamespaces: Sendable {
    public let prefix: String
    private struct Owned {
        var made: [NetworkNamespace] = []
        var cleanups: [@Sendable () -> Void] = []
    }
    private let owned = Mutex(Owned())
    /// Set once in init, cancelled in deinit: never shared between threads while in use.
    nonisolated(unsafe) private let signalSources: [DispatchSourceSignal]
    private static let signals = [SIGINT, SIGTERM, SIGHUP]

    public init(tag: String) {
        prefix = "rp-\(tag)\(getpid())"
        signalSources = Self.signals.map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for (number, source) in zip(Self.signals, signalSources) {
            signal(number, SIG_IGN)
            source.setEventHandler { [self] in
                removeAll()
                exit(128 + number)
            }
            source.resume()
        }
    }

    /// Creates rp-<tag><pid>-<suffix>.
    public func make(_ suffix: String) throws(NamespaceError) -> NetworkNamespace {
        let ns = try NetworkNamespace.create("\(prefix)-\(suffix)")
        owned.withLock { $0.made.append(ns) }
        return ns
    }

    public func remove(_ ns: NetworkNamespace) {
        owned.withLock { $0.made.removeAll { $0 == ns } }
        try? ns.delete()
    }

    /// Also run `cleanup` when removing everything (labs to take down, processes to stop).
    public func onCleanup(_ cleanup: @escaping @Sendable () -> Void) {
        owned.withLock { $0.cleanups.append(cleanup) }
    }

    /// Runs the cleanups (last registered first), then deletes every namespace made here.
    public func removeAll() {
        let taken = owned.withLock { owned -> Owned in
            defer { owned = Owned() }
            return owned
        }
        for cleanup in taken.cleanups.reversed() { cleanup() }
        for ns in taken.made { try? ns.delete() }
    }

    deinit {
        for source in signalSources { source.cancel() }
        for number in Self.signals { signal(number, SIG_DFL) }
    }
}
