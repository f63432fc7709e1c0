import Dispatch
import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// One writer per namespace: an exclusive `flock` on /run/returnpath/locks/<key>.lock, held for as long as this
/// value lives (apply, remove: one run; the agent: its lifetime). The holder writes its PID and role into the file,
/// so that a refused writer can name it. The kernel drops the lock when the holder dies, however it dies.
public final class ApplyLock: Sendable {
    public static let directory = "/run/returnpath/locks"
    private let fd: Int32
    public let path: String

    /// Takes the lock, waiting up to `wait` seconds for the current holder; `role` is written for others to read
    /// ("apply", "remove", "agent").
    public init(key: String, namespace: String, role: String, wait: Double) throws(ApplyError) {
        path = "\(Self.directory)/\(key).lock"
        do throws(Errno) { try RecordStore.makeDirectory(Self.directory) } catch {
            throw .record(path: Self.directory, reason: "create: \(error)")
        }
        let path = self.path
        let fd: Int32
        do throws(Errno) {
            fd = try syscall { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }.get { $0 }
        } catch { throw .record(path: path, reason: "open: \(error)") }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, wait) * 1e9)
        while true {
            switch syscall({ flock(fd, LOCK_EX | LOCK_NB) }) {
            case .success:
                self.fd = fd
                let text = Array("\(getpid()) \(role)\n".utf8)
                _ = ftruncate(fd, 0)
                _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
                return
            case .failure(let e) where e == .wouldBlock:
                if DispatchTime.now().uptimeNanoseconds >= deadline {
                    let holder = Self.holder(fd)
                    close(fd)
                    throw .busy(namespace: namespace, holder: holder, waited: wait)
                }
                usleep(20_000)
            case .failure(let e):
                close(fd)
                throw .record(path: path, reason: "flock: \(e)")
            }
        }
    }

    deinit {
        // Clearing the holder before unlocking: a reader never sees a PID that no longer holds the lock.
        _ = ftruncate(fd, 0)
        close(fd)
    }

    /// "pid 1234, agent" from the lock file, nil when it is empty or unreadable.
    private static func holder(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let parts = String(decoding: buffer[0..<n], as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard let pid = parts.first else { return nil }
        return parts.count > 1 ? "pid \(pid), \(parts[1])" : "pid \(pid)"
    }
}
