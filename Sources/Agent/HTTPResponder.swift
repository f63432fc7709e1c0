import CLinux
import Namespace
import Netlink
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 responder on a thread of its own: one listening socket, poll(2) on it, on every connection
/// and on a wake pipe; no other library. Made for three tiny endpoints read by kubelet and Prometheus, and for
/// clients that misbehave:
/// - one request per connection: the answer carries `Connection: close`, then the write side is shut down and
///   what the client still sends is read and dropped (at most `lingerBytes`, for `lingerSeconds`) before the
///   close, so a client never loses the answer to a reset;
/// - a request head is at most 8 KiB (`HTTPRequestParser.maximumHeadBytes`; more: 431) and must arrive, and its
///   answer be taken, within `timeoutSeconds` each, or the connection is closed;
/// - at most `maximumConnections` at once: a new one closes the oldest (a slow client cannot lock others out).
/// Every system call goes through `syscall`. The socket is made in `namespace` (the agent's own by default).
public final class HTTPResponder: @unchecked Sendable {
    public struct Limits: Sendable {
        public var timeoutSeconds: Double = 5
        public var maximumConnections = 64
        public var lingerSeconds: Double = 1
        public var lingerBytes = 64 * 1024
        public init() {}
    }

    public typealias Handler = @Sendable (HTTPRequestHead) -> HTTPResponse

    /// The address and port it listens on (the port the kernel chose, for port 0).
    public let address: IPAddress
    public let port: UInt16
    let limits: Limits
    let handler: Handler
    private let listener: Int32
    private let wakeRead: Int32, wakeWrite: Int32
    private let stopRequested = Atomic<Bool>(false)

    /// Binds and listens (SO_REUSEADDR; the backlog the kernel allows); `start` serves.
    public init(address: IPAddress, port: UInt16, namespace: NetworkNamespace = .current, limits: Limits = Limits(),
                handler: @escaping Handler) throws(AgentError) {
        let socketAddress = SocketAddress(address, port: port)
        let fd: Int32
        do {
            fd = try namespace.socket(domain: socketAddress.domain, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), protocol: 0)
        } catch {
            throw .metrics("\(Self.text(address, port)): \(error)")
        }
        var one: Int32 = 1
        let steps: [(String, () -> Int32)] = [
            ("setsockopt SO_REUSEADDR", { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }),
            ("bind", { socketAddress.withSockaddr { bind(fd, $0, $1) } }),
            ("listen", { listen(fd, SOMAXCONN) }),
        ]
        for (operation, call) in steps {
            if case .failure(let error) = syscall(call) {
                close(fd)
                throw .metrics("\(operation) \(Self.text(address, port)): \(error)")
            }
        }
        guard let local = SocketAddress.local(of: fd) else {
            close(fd)
            throw .metrics("getsockname \(Self.text(address, port)): no port")
        }
        let pipe: (read: Int32, write: Int32)
        do { pipe = try makePipe("pipe for the HTTP responder") } catch {
            close(fd)
            throw .metrics("\(error)")
        }
        _ = fcntl(pipe.read, F_SETFL, O_NONBLOCK)
        _ = fcntl(pipe.write, F_SETFL, O_NONBLOCK)
        listener = fd
        wakeRead = pipe.read
        wakeWrite = pipe.write
        self.address = local.0
        self.port = local.1
        self.limits = limits
        self.handler = handler
    }

    deinit {
        close(listener)
        close(wakeRead)
        close(wakeWrite)
    }

    /// `http://ADDR:PORT` (brackets for IPv6).
    public var url: String { "http://" + Self.text(address, port) }

    static func text(_ address: IPAddress, _ port: UInt16) -> String {
        address.family == .inet6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// Serves on a new thread until `stop`; `done` runs on that thread once every connection is closed.
    public func start(done: @escaping @Sendable () -> Void = {}) throws(AgentError) {
        do {
            try startThread(name: "rp-http", stackSize: 1 << 20) { [self] in
                serve()
                done()
            }
        } catch {
            throw .metrics("start the HTTP responder's thread (pthread_create): \(error)")
        }
    }

    /// Ends `start`'s loop (from any thread).
    public func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        var byte: UInt8 = 1
        _ = syscall { Glibc.write(wakeWrite, &byte, 1) }   // EAGAIN: a wake-up is already pending
    }

    // MARK: the loop (the responder's thread only)

    final class Connection {
        enum State { case reading, writing, lingering }
        let fd: Int32
        var state = State.reading
        var received: [UInt8] = []
        var pending: [UInt8] = []
        var sent = 0
        /// Bytes read and dropped while lingering.
        var dropped = 0
        var deadline: Int64
        var open = true
        let accepted: Int64
        init(fd: Int32, now: Int64, deadline: Int64) { self.fd = fd; self.accepted = now; self.deadline = deadline }
    }

    private var connections: [Connection] = []
    private var chunk = [UInt8](repeating: 0, count: 4096)

    func serve() {
        while !stopRequested.load(ordering: .sequentiallyConsistent) {
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0), pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            for c in connections {   // all open: the closed ones left at the end of the last round
                fds.append(pollfd(fd: c.fd, events: Int16(c.state == .writing ? POLLOUT : POLLIN), revents: 0))
            }
            let now = monotonicMilliseconds()
            let timeout = connections.map(\.deadline).min().map { Int32(clamping: max(0, $0 - now)) } ?? -1
            guard case .success(let ready) = syscall({ poll(&fds, nfds_t(fds.count), timeout) }) else {
                usleep(10_000)   // ENOMEM (EINTR is retried): try again shortly, never spin
                continue
            }
            if ready > 0 {
                if fds[0].revents != 0 {
                    var sink = [UInt8](repeating: 0, count: 64)
                    while case .success(let n) = syscall({ sink.withUnsafeMutableBytes { read(wakeRead, $0.baseAddress, $0.count) } }), n > 0 {}
                }
                // The connections polled, before accept changes the list.
                for (i, c) in connections.enumerated() where c.open && fds[2 + i].revents != 0 { step(c, revents: fds[2 + i].revents) }
                if fds[1].revents != 0 { acceptAll() }
            }
            let later = monotonicMilliseconds()
            for c in connections where c.deadline <= later { finish(c) }
            connections.removeAll { !$0.open }
        }
        for c in connections { finish(c) }
        connections.removeAll()
    }

    /// The connections waiting in the backlog (at most `maximumConnections` a round, so a flood of connects
    /// cannot keep the loop from the others); at the limit, the oldest one makes room.
    private func acceptAll() {
        for _ in 0..<limits.maximumConnections {
            guard case .success(let fd) = syscall({ clinux_accept4(listener, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)) })
            else { break }
            connections.removeAll { !$0.open }
            if connections.count >= limits.maximumConnections, let oldest = connections.min(by: { $0.accepted < $1.accepted }) {
                finish(oldest)
                connections.removeAll { $0 === oldest }
            }
            let now = monotonicMilliseconds()
            connections.append(Connection(fd: fd, now: now, deadline: now + Int64(limits.timeoutSeconds * 1000)))
        }
        // EAGAIN: the backlog is empty. Other errors (ECONNABORTED, EMFILE, ENOBUFS) end this round; poll tries again.
    }

    private func step(_ c: Connection, revents: Int16) {
        switch c.state {
        case .reading:
            switch receive(c) {
            case .closed: finish(c)
            case .data:
                switch HTTPRequestParser.parse(c.received) {
                case .incomplete: break
                case .request(let head):
                    respond(c, handler(head), head: head.method == "HEAD")
                case .refused(let status, let reason):
                    respond(c, HTTPResponse(status: status, body: reason + "\n"), head: false)
                }
            case .none: break
            }
        case .writing:
            if revents & Int16(POLLERR | POLLHUP) != 0 { finish(c); return }
            write(c)
        case .lingering:
            if case .closed = receive(c, keep: false) { finish(c) }
        }
    }

    enum Received { case data, none, closed }

    /// Reads what is there: `.closed` on end of file or an error (also on more than `lingerBytes` while lingering).
    private func receive(_ c: Connection, keep: Bool = true) -> Received {
        let room = keep ? HTTPRequestParser.maximumHeadBytes + 1 - c.received.count : chunk.count
        guard room > 0 else { return .data }
        switch syscall({ chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, min(room, $0.count), Int32(MSG_DONTWAIT)) } }) {
        case .success(0): return .closed
        case .success(let n):
            if keep { c.received += chunk[0..<n] } else {
                c.dropped += n
                if c.dropped > limits.lingerBytes { return .closed }
            }
            return .data
        case .failure(.wouldBlock): return .none
        case .failure: return .closed
        }
    }

    private func respond(_ c: Connection, _ response: HTTPResponse, head: Bool) {
        c.pending = response.encoded(head: head)
        c.sent = 0
        c.state = .writing
        c.deadline = monotonicMilliseconds() + Int64(limits.timeoutSeconds * 1000)
        write(c)
    }

    private func write(_ c: Connection) {
        while c.sent < c.pending.count {
            let result = syscall {
                c.pending.withUnsafeBytes { bytes -> Int in
                    guard let base = bytes.baseAddress else { return 0 }
                    return send(c.fd, base + c.sent, bytes.count - c.sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
            }
            switch result {
            case .success(let n): c.sent += n
            case .failure(.wouldBlock): return
            case .failure: finish(c); return
            }
        }
        // All sent: no more from us; read and drop what the client still sends, then close.
        _ = syscall { shutdown(c.fd, Int32(SHUT_WR)) }
        c.state = .lingering
        c.deadline = monotonicMilliseconds() + Int64(limits.lingerSeconds * 1000)
    }

    /// Closes the connection (whatever its state) and marks it for removal.
    private func finish(_ c: Connection) {
        guard c.open else { return }
        close(c.fd)
        c.open = false
    }
}
