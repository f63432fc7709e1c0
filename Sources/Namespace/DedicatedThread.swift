import CLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` on a new pthread and waits for it. Used for the one thing that must never happen on a Swift
/// concurrency thread: `setns(2)`, which moves only the calling thread. The thread ends right after `body`, so a
/// namespace it entered can never leak into other work.
func onDedicatedThread<T>(_ body: () -> T) -> Result<T, NamespaceError> {
    var result: T?
    let started: Int32 = withoutActuallyEscaping(body) { body in
        let work = ThreadWork { result = body() }
        let retained = Unmanaged.passRetained(work)
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, threadMain, retained.toOpaque())
        guard rc == 0 else {
            retained.release()
            return rc
        }
        pthread_join(thread, nil)
        return 0
    }
    if case .failure(let error) = syscall(returningErrno: started) {
        return .failure(.system(operation: "start a namespace thread", errno: error))
    }
    guard let result else {
        return .failure(.system(operation: "namespace thread produced no result", errno: .ioError))
    }
    return .success(result)
}

private func threadMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let raw else { return nil }
    Unmanaged<ThreadWork>.fromOpaque(raw).takeRetainedValue().run()
    return nil
}

/// The closure handed to the thread. pthread_join orders everything it wrote before the caller reads it.
private final class ThreadWork: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// A long-lived thread of our own (the agent's event loop, its HTTP responder, the lab's service server): a
/// pthread with `name` (at most 15 bytes, as the kernel keeps it) and `stackSize` bytes of stack, running `body`.
/// Returns when the thread has started; the caller learns that it ended from `body` itself.
public func startThread(name: String, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) throws(Errno) {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attributes, stackSize)
    let work = ThreadWork {
        _ = syscall { clinux_set_thread_name(name) }   // a name is for people reading top: failing changes nothing
        body()
    }
    let retained = Unmanaged.passRetained(work)
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attributes, threadMain, retained.toOpaque())
    if case .failure(let error) = syscall(returningErrno: rc) {
        retained.release()
        throw error
    }
}
