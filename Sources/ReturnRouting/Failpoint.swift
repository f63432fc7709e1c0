import FoundationEssentials
import Synchronization
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// A test hook for crash safety: with `RETURNPATH_FAILPOINT=N` in the environment, the process kills itself with
/// SIGKILL right after its N-th step that changes the node (a sysctl, a batch of routes or rules, an nftables
/// transaction, a write of the record). Tests run apply and remove with N = 1, 2, … to crash them at every step.
/// `RETURNPATH_FAILPOINT_TRACE=1` prints each step to standard error.
enum Failpoint {
    private static let target: Int? = ProcessInfo.processInfo.environment["RETURNPATH_FAILPOINT"].flatMap { Int($0) }
    private static let trace = ProcessInfo.processInfo.environment["RETURNPATH_FAILPOINT_TRACE"] != nil
    private static let count = Atomic<Int>(0)

    static func step(_ what: @autoclosure () -> String) {
        guard target != nil || trace else { return }
        let n = count.add(1, ordering: .relaxed).newValue
        if trace { printError("failpoint \(n): \(what())\n") }
        if n == target { kill(getpid(), SIGKILL) }
    }
}
