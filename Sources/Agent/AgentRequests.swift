#if canImport(Glibc)
import Glibc
#endif

/// What other threads ask of the loop (signals, the router prober): a flag under the commands lock, then a byte on
/// the wake pipe.
extension AgentCore {
    // MARK: requests from other threads

    /// Ends the loop (after the reconcile it is in, if any).
    public func requestStop() {
        commands.withLock { $0.stop = true }
        wake()
    }

    /// SIGHUP: read the policy again and reconcile everything.
    public func requestReload() {
        commands.withLock { $0.reload = true }
        wake()
    }

    /// A router stopped or started answering (the prober's thread): reconcile now.
    func requestGatewayCheck() {
        commands.withLock { $0.gateway = true }
        wake()
    }

    func wake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
    }
}
