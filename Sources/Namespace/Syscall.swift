import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The one place a system call's errno is read: `body` returns the call's result, and -1 (or any negative value)
/// means failure with `errno`. EINTR is retried. Modelled on apple/swift-system's internal `valueOrErrno`.
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
