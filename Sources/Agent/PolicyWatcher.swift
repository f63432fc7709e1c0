import FoundationEssentials
import Namespace
import SystemPackage
import YAMLFile
#if canImport(Glibc)
import Glibc
#endif

/// Watches the directory that holds the policy file with inotify, so that every way a file is replaced is seen:
/// an in-place write (IN_CLOSE_WRITE), an editor's rename-over (IN_MOVED_TO), and a Kubernetes ConfigMap volume
/// update (kubelet writes a new `..TIMESTAMP` directory and renames a `..data_tmp` symlink over `..data`: the
/// file itself, a symlink through `..data`, never changes). When the file is a symlink, the directory of what it
/// points to now is watched too (an in-place write there changes nothing in the given directory). Any event makes
/// the agent read the file again and compare it with what it read last.
final class PolicyWatcher {
    let path: String
    let directory: String
    let descriptor: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    /// The watch on the directory of the file the path resolves to, when that is another directory.
    private var resolved: (watch: Int32, directory: String)?
    static let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
                             | IN_DELETE_SELF | IN_MOVE_SELF)

    init(path: String) throws(AgentError) {
        self.path = path
        let url = URL(fileURLWithPath: path)
        directory = url.deletingLastPathComponent().path
        let fd = try syscall { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }.get { AgentError.system("inotify_init1", $0) }
        let watched = url.deletingLastPathComponent().path
        if case .failure(let e) = syscall({ inotify_add_watch(fd, watched, Self.mask) }) {
            close(fd)
            throw .system("watch \(watched) (inotify_add_watch)", e)
        }
        descriptor = fd
        followTarget()
    }

    /// Watches the directory the path resolves to now (and stops watching the one it resolved to before).
    func followTarget() {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().deletingLastPathComponent().path
        if target == resolved?.directory { return }
        if let old = resolved {
            _ = inotify_rm_watch(descriptor, old.watch)   // EINVAL when the directory is gone: nothing to undo
            resolved = nil
        }
        guard target != directory else { return }
        // A target that cannot be watched (gone again) is watched once the link changes: the directory's watch sees it.
        if case .success(let watch) = syscall({ inotify_add_watch(descriptor, target, Self.mask) }) { resolved = (watch, target) }
    }

    deinit { close(descriptor) }

    /// Reads the queued events; true when there was any (the file may have changed).
    func drain() -> Bool {
        var any = false
        // Until the queue is empty (EAGAIN: the descriptor is non-blocking) or the read fails.
        while case .success(let n) = syscall({ buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) } }), n > 0 {
            any = true
        }
        if any { followTarget() }
        return any
    }

    /// The file's text now (following symlinks), or why it cannot be read.
    func contents() -> Result<String, AgentError> {
        do throws(FileError) {
            return .success(try YAMLReader.read(path))
        } catch {
            return .failure(.policy(error.description))
        }
    }
}
