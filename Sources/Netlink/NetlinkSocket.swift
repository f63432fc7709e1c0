import CLinux
import Namespace
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A netlink socket (rtnetlink by default, or nfnetlink) bound to one network namespace (the one it was created
/// in). Every request goes through
/// one receive loop: NLM_F_ACK always, sequence numbers checked, extended-ack text put into the error, multipart
/// dumps collected and redone when the kernel flags them NLM_F_DUMP_INTR, truncation detected.
///
/// Requests are serialised by a lock, so one socket may be shared between tasks. Calls block for as long as the
/// kernel takes to answer (microseconds to milliseconds).
public final class NetlinkSocket: Sendable {
    public let namespace: NetworkNamespace
    /// NETLINK_ROUTE or NETLINK_NETFILTER.
    public let family: Int32
    /// The port id the kernel gave the socket.
    public let portID: UInt32
    private let fd: Int32
    private let state: Mutex<State>

    /// Receive buffer: at least 32 KiB (the kernel's largest dump skb); MSG_TRUNC tells if a datagram was bigger.
    static let receiveBufferSize = 64 * 1024
    /// Requests sent in one sendmsg before reading their acks.
    static let pipelineWindow = 128
    /// Redo a dump at most this often when the kernel reports it inconsistent.
    static let dumpAttempts = 8

    struct State: ~Copyable {
        var sequence: UInt32
        var buffer: UnsafeMutableRawBufferPointer
    }

    /// Opens a socket in `namespace` (created on a dedicated thread there; never moves the caller).
    /// `family` is NETLINK_ROUTE (rtnetlink) or NETLINK_NETFILTER (nf_tables).
    public init(namespace: NetworkNamespace = .current, family: Int32 = NETLINK_ROUTE) throws(NetlinkError) {
        let fd: Int32
        do {
            fd = try namespace.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: family)
        } catch {
            throw .namespace(error)
        }
        func option(_ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
            var v = value
            return setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
        }
        // Extended acks carry the kernel's explanation; capped acks do not echo our request back.
        _ = option(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        // Dump requests are checked strictly, and filtered in the kernel (by table, protocol, interface).
        if family == NETLINK_ROUTE { _ = option(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1) }
        _ = option(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        // Room for a whole pipeline window of acks; FORCE needs CAP_NET_ADMIN, so fall back quietly.
        if !option(SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20) { _ = option(SOL_SOCKET, SO_RCVBUF, 4 << 20) }
        if !option(SOL_SOCKET, SO_SNDBUFFORCE, 1 << 20) { _ = option(SOL_SOCKET, SO_SNDBUF, 1 << 20) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        var length = socklen_t(MemoryLayout<sockaddr_nl>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
            }
        }
        if !bound {
            let e = Errno(rawValue: errno)
            close(fd)
            throw .system(operation: "bind netlink socket in \(namespace)", errno: e)
        }
        self.fd = fd
        self.family = family
        self.namespace = namespace
        self.portID = address.nl_pid
        self.state = Mutex(State(
            sequence: UInt32(truncatingIfNeeded: UInt64(time(nil))),
            buffer: .allocate(byteCount: Self.receiveBufferSize, alignment: 8)))
    }

    /// The namespace's cookie (SO_NETNS_COOKIE, Linux 5.14+): unique for the life of the machine, unlike its inode
    /// number, which the kernel reuses once a namespace is gone. nil where the kernel does not have it.
    public func namespaceCookie() -> UInt64? {
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        return getsockopt(fd, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &length) == 0 ? cookie : nil
    }

    deinit {
        close(fd)
        state.withLock { $0.buffer.deallocate() }
    }

    // MARK: public request API

    /// Sends one request and returns the data messages that answer it (none for a plain change).
    @discardableResult
    public func request(_ message: MessageBuilder, operation: @autoclosure () -> String) throws(NetlinkError) -> [NetlinkMessage] {
        let outcome = try exchange([message], dump: false)[0]
        if let failure = outcome.failure { throw failure.error(operation()) }
        return outcome.messages
    }

    /// Runs a dump (NLM_F_DUMP is added) and returns all its messages; redone when the kernel flags it interrupted.
    public func dump(_ message: MessageBuilder, operation: @autoclosure () -> String) throws(NetlinkError) -> [NetlinkMessage] {
        let request = MessageBuilder(copying: message, addingFlags: UInt16(NLM_F_DUMP))
        for _ in 0..<Self.dumpAttempts {
            let outcome = try exchange([request], dump: true)[0]
            if let failure = outcome.failure { throw failure.error(operation()) }
            if !outcome.interrupted { return outcome.messages }
        }
        throw .protocolViolation(operation: operation(),
                                 reason: "the dump was interrupted by concurrent changes \(Self.dumpAttempts) times in a row")
    }

    /// Sends many change requests, pipelined (a window of them per sendmsg, then their acks), and returns one
    /// result per request, in order. The kernel handles each independently: one failing does not stop the rest.
    public func batch(_ messages: [MessageBuilder], operation: (Int) -> String) throws(NetlinkError) -> [NetlinkError?] {
        var results: [NetlinkError?] = []
        results.reserveCapacity(messages.count)
        var start = 0
        while start < messages.count {
            let end = min(start + Self.pipelineWindow, messages.count)
            let outcomes = try exchange(Array(messages[start..<end]), dump: false)
            for (i, outcome) in outcomes.enumerated() {
                results.append(outcome.failure.map { $0.error(operation(start + i)) })
            }
            start = end
        }
        return results
    }

    // MARK: the receive loop

    struct KernelFailure {
        var errno: Errno
        var message: String?
        func error(_ operation: String) -> NetlinkError {
            .kernel(operation: operation, errno: errno, message: message)
        }
    }

    struct Outcome {
        var messages: [NetlinkMessage] = []
        var failure: KernelFailure?
        var interrupted = false
        var complete = false
    }

    /// Sends `messages` in one datagram, with consecutive sequence numbers, NLM_F_REQUEST|NLM_F_ACK set, and
    /// reads until every one is answered: an ack or error (NLMSG_ERROR) for a change or get, NLMSG_DONE for a dump.
    /// Messages with other sequence numbers (late answers to an abandoned request) are dropped.
    /// With `framing`, the messages are wrapped in an nfnetlink batch (begin, messages, end: one transaction);
    /// begin and end ask for no ack.
    func exchange(_ messages: [MessageBuilder], dump: Bool,
                  framing: (begin: MessageBuilder, end: MessageBuilder)? = nil) throws(NetlinkError) -> [Outcome] {
        precondition(!dump || messages.count == 1, "dumps cannot be pipelined")
        return try state.withLock { state throws(NetlinkError) -> [Outcome] in
            let first = state.sequence &+ 2
            state.sequence &+= UInt32(messages.count + 2)
            var datagram: [UInt8] = []
            if let framing {
                datagram += MessageBuilder(copying: framing.begin, addingFlags: UInt16(NLM_F_REQUEST)).finished(sequence: first &- 1)
            }
            for (i, message) in messages.enumerated() {
                let flagged = MessageBuilder(copying: message, addingFlags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
                datagram += flagged.finished(sequence: first &+ UInt32(i))
            }
            if let framing {
                datagram += MessageBuilder(copying: framing.end, addingFlags: UInt16(NLM_F_REQUEST))
                    .finished(sequence: first &+ UInt32(messages.count))
            }
            try send(datagram)

            var outcomes = [Outcome](repeating: Outcome(), count: messages.count)
            var pending = messages.count
            while pending > 0 {
                let received = try receive(into: state.buffer)
                let parsed: [NetlinkMessage]
                do throws(WireError) {
                    parsed = try NetlinkMessage.parse(UnsafeRawBufferPointer(rebasing: state.buffer[0..<received]))
                } catch {
                    throw .protocolViolation(operation: "read netlink reply", reason: error.description)
                }
                for message in parsed {
                    let slot = Int(message.sequence &- first)
                    guard slot >= 0, slot < messages.count, !outcomes[slot].complete else { continue }
                    if message.flags & UInt16(NLM_F_DUMP_INTR) != 0 { outcomes[slot].interrupted = true }
                    switch Int32(message.type) {
                    case NLMSG_ERROR, NLMSG_DONE:
                        if Int32(message.type) == NLMSG_DONE && !dump { continue }
                        outcomes[slot].failure = try Self.status(of: message)
                        outcomes[slot].complete = true
                        pending -= 1
                    case NLMSG_NOOP:
                        continue
                    default:
                        outcomes[slot].messages.append(message)
                    }
                }
            }
            return outcomes
        }
    }

    /// The error code and extended-ack text of an NLMSG_ERROR or NLMSG_DONE message (nil for a plain ack).
    static func status(of message: NetlinkMessage) throws(NetlinkError) -> KernelFailure? {
        let payload = message.payload
        guard payload.count >= 4 else {
            if Int32(message.type) == NLMSG_DONE { return nil }  // old kernels send an empty DONE
            throw .protocolViolation(operation: "read netlink ack", reason: "error message of \(payload.count) bytes")
        }
        let code = payload.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
        guard code != 0 else { return nil }
        var text: String?
        var missing: UInt32?
        if message.flags & UInt16(NLM_F_ACK_TLVS) != 0 {
            // NLMSG_ERROR: error code, then the request's header (and body unless capped), then TLVs.
            var skip = 4
            if Int32(message.type) == NLMSG_ERROR, payload.count >= 4 + netlinkHeaderSize {
                let echoed = Int(payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) })
                skip += message.flags & UInt16(NLM_F_CAPPED) != 0 ? netlinkHeaderSize : align4(echoed)
            }
            if skip <= payload.count {
                try? PayloadReader.forEachAttribute(in: payload[...].dropFirst(skip)) { type, value in
                    switch Int32(type) {
                    case Int32(NLMSGERR_ATTR_MSG.rawValue): text = value.string()
                    case Int32(NLMSGERR_ATTR_MISS_TYPE.rawValue): missing = try? value.u32()
                    default: break
                    }
                }
            }
        }
        if text == nil, let missing { text = "missing attribute \(missing)" }
        return KernelFailure(errno: Errno(rawValue: -code), message: text)
    }

    private func send(_ datagram: [UInt8]) throws(NetlinkError) {
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        while true {
            let sent = datagram.withUnsafeBytes { bytes in
                withUnsafePointer(to: &kernel) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
            if sent >= 0 { return }
            if errno == EINTR { continue }
            throw .system(operation: "send to netlink socket in \(namespace)", errno: Errno(rawValue: errno))
        }
    }

    private func receive(into buffer: UnsafeMutableRawBufferPointer) throws(NetlinkError) -> Int {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_TRUNC))
            if n > buffer.count {
                throw .protocolViolation(operation: "read netlink reply",
                                         reason: "datagram of \(n) bytes truncated to \(buffer.count)")
            }
            if n > 0 { return n }
            if n == 0 {
                throw .protocolViolation(operation: "read netlink reply", reason: "empty datagram")
            }
            let e = Errno(rawValue: errno)
            if e == .interrupted { continue }
            if e == .resourceTemporarilyUnavailable {
                throw .protocolViolation(operation: "read netlink reply", reason: "no answer from the kernel in 30 s")
            }
            if e == .noBufferSpace {
                throw .system(operation: "read netlink reply (receive buffer overrun, answers lost)", errno: e)
            }
            throw .system(operation: "read netlink reply", errno: e)
        }
    }
}

extension MessageBuilder {
    init(copying other: MessageBuilder, addingFlags extra: UInt16) {
        self = other
        setFlags(other.flags | extra)
    }
}
