import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The one place a system call's errno is read: `body` returns the call's result, and -1 (or any negative value)
/// means failure with `errno`. EINTR is retried. Modelled on apple/swift-system's internal `valueOrErrno`.
///
/// errno belongs to the thread: call this on the thread that made the call (inside `NetworkNamespace.perform`, for
/// calls made in a namespace) and carry the `Result` out.
@inline(__always)
public func syscall<I: FixedWidthInteger>(retryOnInterrupt: Bool = true, _ body: () -> I) -> Result<I, Errno> {
    while true {
        let result = body()
        if result >= 0 { return .success(result) }
        let error = Errno(rawValue: errno)
        if retryOnInterrupt && error == .interrupted { continue }
        return .failure(error)
    }
}

/// For the calls that return their error number instead of setting errno (posix_spawn, pthread_create): 0 is
/// success.
@inline(__always)
public func syscall(returningErrno code: Int32) -> Result<Void, Errno> {
    code == 0 ? .success(()) : .failure(Errno(rawValue: code))
}

extension Result where Failure == Errno {
    /// The value, or the errno as a typed error made by `wrap`.
    @inline(__always)
    public func get<E: Error>(or wrap: (Errno) -> E) throws(E) -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let error): throw wrap(error)
        }
    }
}

/// Milliseconds on the monotonic clock (deadlines and timeouts; never the wall clock).
public func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
