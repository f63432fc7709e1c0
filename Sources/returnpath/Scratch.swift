import Dispatch
import Foundation
import Namespace

/// Throwaway namespaces for benchmarks and demos: named rp-<tag><pid>-<suffix>, removed by `removeAll()`, and
/// also when the process is interrupted (SIGINT, SIGTERM, SIGHUP), so nothing is left behind.
final class ScratchNamespaces: @unchecked Sendable {
    let prefix: String
    private let lock = NSLock()
    private var made: [NetworkNamespace] = []
    private var extra: [@Sendable () -> Void] = []
    private var signalSources: [DispatchSourceSignal] = []

    init(tag: String) {
        prefix = "rp-\(tag)\(getpid())"
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                removeAll()
                Foundation.exit(128 + number)
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Creates rp-<tag><pid>-<suffix>.
    func make(_ suffix: String) throws(NamespaceError) -> NetworkNamespace {
        let ns = try NetworkNamespace.create("\(prefix)-\(suffix)")
        lock.withLock { made.append(ns) }
        return ns
    }

    func remove(_ ns: NetworkNamespace) {
        lock.withLock { made.removeAll { $0 == ns } }
        try? ns.delete()
    }

    /// Also run `cleanup` when removing everything (labs to take down, processes to stop).
    func onCleanup(_ cleanup: @escaping @Sendable () -> Void) {
        lock.withLock { extra.append(cleanup) }
    }

    func removeAll() {
        let (all, cleanups) = lock.withLock { () -> ([NetworkNamespace], [@Sendable () -> Void]) in
            defer { made.removeAll(); extra.removeAll() }
            return (made, extra)
        }
        for cleanup in cleanups.reversed() { cleanup() }
        for ns in all { try? ns.delete() }
    }

    deinit {
        for source in signalSources { source.cancel() }
        for number in [SIGINT, SIGTERM, SIGHUP] { signal(number, SIG_DFL) }
    }
}
