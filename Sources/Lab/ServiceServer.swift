import Dispatch
import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The lab's services: one process serving every service of one lab, each listening socket created inside its
/// host's namespace. A connection gets the service's reply line, then is closed — like the POC's
/// `socat tcp-l:3000,bind=…,fork exec:'echo svc1'`. The same server runs on a thread of its own for the
/// benchmarks (`ServiceServer.Background`), where a connection gets nothing and is closed at once.
public enum ServiceServer {
    /// The listen(2) backlog of a lab service.
    public static let defaultBacklog: Int32 = 128

    /// A listening socket and the bytes each connection gets before it is closed.
    public struct Listener: Sendable {
        public let fd: Int32
        let reply: [UInt8]
    }

    /// Opens a non-blocking listening TCP socket on address:port inside `namespace` (0.0.0.0 or :: for every
    /// address). Each connection gets `reply` and a newline, or nothing when `reply` is nil.
    public static func listen(on address: IPAddress, port: UInt16, in namespace: NetworkNamespace, reply: String?,
                              backlog: Int32 = defaultBacklog) throws(ServiceError) -> Listener {
        let what = "listen on \(address):\(port) in \(namespace)"
        let local = SocketAddress(address, port: port)
        let fd: Int32
        do {
            fd = try namespace.socket(domain: local.domain, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                      protocol: 0)
        } catch {
            throw ServiceError(operation: what, reason: error.description)
        }
        var one: Int32 = 1
        let listening = syscall { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
            .flatMap { _ in syscall { local.withSockaddr { bind(fd, $0, $1) } } }
            .flatMap { _ in syscall { Glibc.listen(fd, backlog) } }
        if case .failure(let error) = listening {
            close(fd)
            throw ServiceError(operation: what, reason: "\(error)")
        }
        return Listener(fd: fd, reply: reply.map { Array(($0 + "\n").utf8) } ?? [])
    }

    /// The lab's service process: opens every listening socket, reports "ready" (or the error) on `readyFD`, then
    /// serves until killed.
    public static func run(_ services: [LabState.ServiceEntry], readyFD: Int32) -> Never {
        signal(SIGPIPE, SIG_IGN)
        var listeners: [Listener] = []
        for service in services {
            do {
                let namespace: NetworkNamespace
                do {
                    namespace = try NetworkNamespace(named: service.namespace)
                } catch {
                    throw ServiceError(operation: "listen on \(service.address):\(service.port) in \(service.namespace)",
                                       reason: error.description)
                }
                listeners.append(try listen(on: service.address, port: service.port, in: namespace, reply: service.reply))
            } catch {
                report(readyFD, "error: \(error)\n")
                exit(1)
            }
        }
        report(readyFD, "ready\n")
        close(readyFD)
        serve(listeners, stopFD: nil)
        exit(1)
    }

    /// Accepts and answers connections until `stopFD` becomes readable (never when nil); returns then, or when poll
    /// fails.
    static func serve(_ listeners: [Listener], stopFD: Int32?) {
        var fds = listeners.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        if let stopFD { fds.append(pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)) }
        while true {
            guard case .success = syscall({ poll(&fds, nfds_t(fds.count), -1) }) else { return }
            if stopFD != nil, let last = fds.last, last.revents != 0 { return }
            for i in listeners.indices where fds[i].revents != 0 {
                // Non-blocking: take every pending connection, until EAGAIN.
                while case .success(let client) = syscall({ accept(fds[i].fd, nil, nil) }) {
                    let reply = listeners[i].reply
                    if !reply.isEmpty {
                        _ = reply.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        shutdown(client, Int32(SHUT_WR))
                    }
                    close(client)
                }
            }
        }
    }

    private static func report(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = syscall { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    }

    /// Listeners served on a thread of their own until `stop()` (the benchmarks' server). Owns the listeners: they
    /// are closed when it stops.
    public final class Background: Sendable {
        private let listeners: [Listener]
        private let stopPipe: (read: Int32, write: Int32)
        private let finished = DispatchSemaphore(value: 0)

        public init(_ listeners: [Listener]) throws(ServiceError) {
            do {
                stopPipe = try makePipe("pipe for the service thread")
            } catch {
                for listener in listeners { close(listener.fd) }
                throw ServiceError(operation: "start serving", reason: error.description)
            }
            self.listeners = listeners
            let stop = stopPipe.read, done = finished
            do {
                try startThread(name: "rp-services") {
                    ServiceServer.serve(listeners, stopFD: stop)
                    done.signal()
                }
            } catch {
                for listener in listeners { close(listener.fd) }
                close(stopPipe.read)
                close(stopPipe.write)
                throw ServiceError(operation: "start serving", reason: "pthread_create: \(error)")
            }
        }

        /// Stops serving and closes the listening sockets; returns once the thread is done.
        public func stop() {
            let byte: [UInt8] = [1]
            _ = syscall { byte.withUnsafeBytes { write(stopPipe.write, $0.baseAddress, $0.count) } }
            finished.wait()
            for listener in listeners { close(listener.fd) }
            close(stopPipe.read)
            close(stopPipe.write)
        }
    }
}

/// A service that could not listen: where, and why.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var reason: String
    public var description: String { "\(operation): \(reason)" }
}
