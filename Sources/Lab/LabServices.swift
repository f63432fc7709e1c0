import Namespace
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// The lab's service process (`returnpath lab serve --name NAME`, see ServiceServer): started detached, reporting
/// "ready" on a pipe; found again in /proc when `up` was killed before it could record the pid. Process supervision
/// itself is Namespace's `ProcessTable`.
extension LabManager {
    /// How long `up` waits for the service process to report ready.
    static let servicesReadyTimeoutMilliseconds: Int64 = 5000
    /// The descriptor on which the service process reports "ready" (or its error).
    public static let readyDescriptor: Int32 = 3

    /// Spawns `serveCommand NAME` detached (own session, stdio on /dev/null, stderr to the lab's log), reports its
    /// pid through `started` at once, then waits for "ready" on a pipe.
    func startServices(lab: String, started: (pid_t) throws(LabError) -> Void) throws(LabError) -> pid_t {
        let ready: (read: Int32, write: Int32)
        do { ready = try makePipe() } catch {
            throw LabError(lab: lab, step: "start services", host: nil, reason: error.description)
        }
        defer { close(ready.read) }
        let log = syscall { open(store.logPath(lab), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644) }
        defer { if case .success(let fd) = log { close(fd) } }
        let pid: pid_t
        do {
            pid = try NetworkNamespace.current.spawn(serveCommand + [lab], descriptors: [
                ChildDescriptor(nil, as: 0), ChildDescriptor(nil, as: 1),
                ChildDescriptor(try? log.get(), as: 2), ChildDescriptor(ready.write, as: Self.readyDescriptor),
            ], newSession: true)
        } catch {
            close(ready.write)
            throw LabError(lab: lab, step: "start services", host: nil, reason: error.description)
        }
        close(ready.write)
        do { try started(pid) } catch {
            ProcessTable.terminate(pid)
            throw error
        }
        let answer = readAvailable(ready.read, timeoutMilliseconds: Self.servicesReadyTimeoutMilliseconds)
        let text = String(decoding: answer, as: UTF8.self).trimmed()
        guard text == "ready" else {
            ProcessTable.terminate(pid)
            throw LabError(lab: lab, step: "start services", host: nil,
                           reason: text.isEmpty ? "the service process did not report ready within \(Self.servicesReadyTimeoutMilliseconds / 1000) s" : text)
        }
        return pid
    }

    /// Stops the lab's service process: the recorded pid and any process whose command line is this lab's
    /// `lab serve` (found in /proc, in case `up` was killed before it could record the pid).
    func stopServices(lab: String, state: LabState?) {
        var pids = Set(servicePIDs(lab: lab))
        if let pid = state?.servicePID, isServeProcess(pid, lab: lab) { pids.insert(pid) }
        for pid in pids { ProcessTable.terminate(pid) }
    }

    func servicePIDs(lab: String) -> [pid_t] {
        ProcessTable.processes(withArguments: serveArguments(lab: lab))
    }

    /// True when PID's command line is this lab's serve command (whatever path the binary was started by).
    func isServeProcess(_ pid: pid_t, lab: String) -> Bool {
        guard let arguments = ProcessTable.arguments(of: pid) else { return false }
        return Array(arguments.dropFirst()) == serveArguments(lab: lab)
    }

    /// The serve command's arguments after the program.
    private func serveArguments(lab: String) -> [String] { Array(serveCommand.dropFirst()) + [lab] }
}
