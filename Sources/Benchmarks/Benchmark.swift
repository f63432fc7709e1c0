import Dispatch
import Lab
import Namespace
import Netlink
import ReturnRouting
#if canImport(Glibc)
import Glibc
#endif

/// Seconds `body` took (monotonic clock).
public func time<E: Error>(_ body: () throws(E) -> Void) throws(E) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// The p-quantile of `values` (nearest rank); NaN for none.
func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

/// Sleeps `seconds` (nanosleep; a signal's interruption is slept out).
func pause(seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while case .failure(.interrupted) = syscall(retryOnInterrupt: false, { nanosleep(&request, &remaining) }) { request = remaining }
}

/// Why a benchmark stopped. Each case keeps the error of the layer that failed; the description is that error's
/// own (or, for `failed`, what the benchmark found wrong).
public enum BenchmarkError: Error, CustomStringConvertible, Sendable {
    /// A check of the benchmark itself failed (a baseline did different work, a tool failed, a load generator's
    /// output did not parse).
    case failed(String)
    case netlink(NetlinkError)
    case namespace(NamespaceError)
    case program(ProgramError)
    case lab(LabError)
    case apply(ApplyError)
    case service(ServiceError)

    public var description: String {
        switch self {
        case .failed(let text): return text
        case .netlink(let error): return error.description
        case .namespace(let error): return error.description
        case .program(let error): return error.description
        case .lab(let error): return error.description
        case .apply(let error): return error.description
        case .service(let error): return error.description
        }
    }

    /// Wraps whatever a layer below threw.
    static func wrapping(_ error: any Error) -> BenchmarkError {
        switch error {
        case let error as BenchmarkError: return error
        case let error as NetlinkError: return .netlink(error)
        case let error as NamespaceError: return .namespace(error)
        case let error as ProgramError: return .program(error)
        case let error as LabError: return .lab(error)
        case let error as ApplyError: return .apply(error)
        case let error as ServiceError: return .service(error)
        default: return .failed("\(error)")
        }
    }
}

/// Runs `body`, turning any error into a BenchmarkError (the engines call several layers in one expression).
func benchmarkStep<T>(_ body: () throws -> T) throws(BenchmarkError) -> T {
    do { return try body() } catch { throw .wrapping(error) }
}

/// Runs a program and fails the benchmark, with `what` and the program's errors, unless it exits 0.
func runChecked(_ arguments: [String], in namespace: NetworkNamespace = .current,
                _ what: @autoclosure () -> String) throws(BenchmarkError) -> ProgramRun {
    let run: ProgramRun
    do { run = try ProgramRun.run(arguments, in: namespace) } catch { throw .program(error) }
    guard run.status == 0 else { throw .failed("\(what()): \(run.errors)") }
    return run
}
