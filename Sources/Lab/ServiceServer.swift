import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The lab's services: one process serving every service of one lab, each listening socket created inside its
/// host's namespace. A connection gets the service's reply line, then is closed — like the POC's
/// `socat tcp-l:3000,bind=…,fork exec:'echo svc1'`.
public enum ServiceServer {
    /// Opens every listening socket, reports "ready" (or the error) on `readyFD`, then serves until killed.
    public static func run(_ services: [LabState.ServiceEntry], readyFD: Int32) -> Never {
        signal(SIGPIPE, SIG_IGN)
        var listeners: [(fd: Int32, reply: [UInt8])] = []
        for service in services {
            switch listen(service) {
            case .success(let fd): listeners.append((fd, Array((service.reply + "\n").utf8)))
            case .failure(let message):
                report(readyFD, "error: \(message)\n")
                exit(1)
            }
        }
        report(readyFD, "ready\n")
        close(readyFD)

        var fds = listeners.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        while true {
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                exit(1)
            }
            for i in fds.indices where fds[i].revents != 0 {
                while true {
                    let client = accept(fds[i].fd, nil, nil)
                    if client < 0 { break }
                    let reply = listeners[i].reply
                    _ = reply.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    shutdown(client, Int32(SHUT_WR))
                    close(client)
                }
            }
        }
    }

    private enum ListenResult { case success(Int32), failure(String) }

    private static func listen(_ service: LabState.ServiceEntry) -> ListenResult {
        guard let address = IPAddress(service.address) else { return .failure("bad address \(service.address)") }
        let what = "listen on \(service.address):\(service.port) in \(service.namespace)"
        let fd: Int32
        do {
            let ns = try NetworkNamespace(named: service.namespace)
            fd = try ns.socket(domain: address.family == .inet6 ? AF_INET6 : AF_INET,
                               type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), protocol: 0)
        } catch {
            return .failure("\(what): \(error)")
        }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withSocketAddress(address, service.port) { bind(fd, $0, $1) }
        guard bound == 0, Glibc.listen(fd, 128) == 0 else {
            let e = Errno(rawValue: errno)
            close(fd)
            return .failure("\(what): \(e)")
        }
        return .success(fd)
    }

    private static func report(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
