import Foundation
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Watches the directory that holds the policy file with inotify, so that every way a file is replaced is seen:
/// an in-place write (IN_CLOSE_WRITE), an editor's rename-over (IN_MOVED_TO), and a Kubernetes ConfigMap volume
/// update (kubelet writes a new `..TIMESTAMP` directory and renames a `..data_tmp` symlink over `..data`: the
/// file itself, a symlink through `..data`, never changes). Any event in the directory makes the agent read the
/// file again and compare it with what it read last.
final class PolicyWatcher {
    let path: String
    let directory: String
    let descriptor: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    init(path: String) throws(AgentError) {
        self.path = path
        let url = URL(fileURLWithPath: path)
        directory = url.deletingLastPathComponent().path
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw .system("inotify_init1", Errno(rawValue: errno)) }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
                          | IN_DELETE_SELF | IN_MOVE_SELF)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            let e = Errno(rawValue: errno)
            close(fd)
            throw .system("watch \(directory) (inotify_add_watch)", e)
        }
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// Reads the queued events; true when there was any (the file may have changed).
    func drain() -> Bool {
        var any = false
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if n > 0 { any = true; continue }
            if n < 0 && errno == EINTR { continue }
            return any
        }
    }

    /// The file's text now (following symlinks), or why it cannot be read.
    func contents() -> Result<String, AgentError> {
        do {
            return .success(try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            return .failure(.policy("\(path): cannot be read: \(error.localizedDescription)"))
        }
    }
}
