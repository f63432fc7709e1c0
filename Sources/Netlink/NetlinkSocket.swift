import CLinux
import Namespace
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A netlink socket (rtnetlink by default, or nfnetlink) bound to one network namespace (the one it was created
/// in). Every request goes through one receive loop: NLM_F_ACK always; only datagrams from the kernel (sender port
/// id 0) are read; sequence numbers checked (a reply to no request of ours is a protocol violation, except late
/// answers to an exchange that ended early, which are skipped); extended-ack text put into the error; multipart
/// dumps collected and redone when the kernel flags them NLM_F_DUMP_INTR; truncation detected.
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
    /// The socket's receive buffer: room for a whole pipeline window of acks (SO_RCVBUF, or beyond rmem_max with
    /// SO_RCVBUFFORCE).
    static let socketReceiveBufferBytes: Int32 = 4 << 20
    /// The socket's send buffer: a window of requests in one sendmsg.
    static let socketSendBufferBytes: Int32 = 1 << 20
    /// How long a request waits for the kernel's answer (SO_RCVTIMEO).
    static let receiveTimeoutSeconds = 30
    /// The port id of the kernel's end of every netlink socket.
    static let kernelPortID: UInt32 = 0

    struct State: ~Copyable {
        var sequence: UInt32
        var buffer: UnsafeMutableRawBufferPointer
        var abandoned = AbandonedExchanges()
    }

    /// Opens a socket in `namespace` (created on a dedicated thread there; never moves the caller).
    /// `family` is NETLINK_ROUTE (rtnetlink) or NETLINK_NETFILTER (nf_tables).
    public init(namespace: NetworkNamespace = .current, family: Int32 = NETLINK_ROUTE) throws(NetlinkError) {
        let (fd, portID) = try NetlinkDescriptor.open(
            namespace, family: family,
            options: [
                // Extended acks carry the kernel's explanation (Linux 4.12+); without them errors have only errno.
                .init(level: SOL_NETLINK, name: NETLINK_EXT_ACK, value: 1, requiredFor: nil),
                // Capped acks do not echo our request back (Linux 4.3+); without them acks are only larger.
                .init(level: SOL_NETLINK, name: NETLINK_CAP_ACK, value: 1, requiredFor: nil),
            ] + (family == NETLINK_ROUTE ? [
                // Dump requests are checked strictly and filtered in the kernel (by table, protocol, interface):
                // the readers rely on it (Linux 4.20+).
                .init(level: SOL_NETLINK, name: NETLINK_GET_STRICT_CHK, value: 1,
                      requiredFor: "NETLINK_GET_STRICT_CHK, kernel-filtered dumps, Linux 4.20+"),
            ] : []),
            // Room for a whole pipeline window of acks, and a window of requests in one sendmsg.
            receiveBuffer: Self.socketReceiveBufferBytes, sendBuffer: Self.socketSendBufferBytes,
            receiveTimeoutSeconds: Self.receiveTimeoutSeconds)
        self.fd = fd
        self.family = family
        self.namespace = namespace
        self.portID = portID
        self.state = Mutex(State(
            sequence: UInt32(truncatingIfNeeded: UInt64(time(nil))),
            buffer: .allocate(byteCount: Self.receiveBufferSize, alignment: 8)))
    }

    /// The namespace's cookie (SO_NETNS_COOKIE, Linux 5.14+): unique for the life of the machine, unlike its inode
    /// number, which the kernel reuses once a namespace is gone. nil where the kernel does not have it.
    public func namespaceCookie() -> UInt64? {
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        guard case .success = syscall({ getsockopt(fd, SOL_SOCKET, clinux_SO_NETNS_COOKIE, &cookie, &length) }) else { return nil }
        return cookie
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
    /// With `framing`, the messages are wrapped in an nfnetlink batch (begin, messages, end: one transaction);
    /// begin and end ask for no ack, and an error the kernel reports for them fails the batch.
    ///
    /// Each exchange owns the sequence numbers first-1 … first+count (the framing's included). When it ends before
    /// reading every answer (a timeout, a malformed reply, a violation), its numbers are remembered as abandoned:
    /// their late answers are skipped by the next exchanges. Any other sequence number is a protocol violation.
    func exchange(_ messages: [MessageBuilder], dump: Bool,
                  framing: (begin: MessageBuilder, end: MessageBuilder)? = nil) throws(NetlinkError) -> [Outcome] {
        precondition(!dump || messages.count == 1, "dumps cannot be pipelined")
        return try state.withLock { state throws(NetlinkError) -> [Outcome] in
            let first = state.sequence &+ 2
            state.sequence &+= UInt32(messages.count + 2)
            let window = ExchangeWindow(first: first, count: UInt32(messages.count))
            var datagram: [UInt8] = []
            if let framing {
                datagram += MessageBuilder(copying: framing.begin, addingFlags: UInt16(NLM_F_REQUEST)).finished(sequence: window.begin)
            }
            for (i, message) in messages.enumerated() {
                let flagged = MessageBuilder(copying: message, addingFlags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
                datagram += flagged.finished(sequence: first &+ UInt32(i))
            }
            if let framing {
                datagram += MessageBuilder(copying: framing.end, addingFlags: UInt16(NLM_F_REQUEST))
                    .finished(sequence: window.end)
            }
            var finished = false
            defer { if !finished { state.abandoned.add(window) } }
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
                    switch window.classify(message.sequence, framed: framing != nil, abandoned: state.abandoned) {
                    case .request(let slot):
                        guard !outcomes[slot].complete else { continue }
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
                    case .framing:
                        // The kernel answers a batch's begin or end only to refuse it (no subsystem, bad batch).
                        if Int32(message.type) == NLMSG_ERROR, let failure = try Self.status(of: message) {
                            throw failure.error("nfnetlink batch in \(namespace)")
                        }
                    case .stale:
                        continue
                    case .unexpected:
                        // Its other answers, if any, are skipped from now on.
                        state.abandoned.add(sequence: message.sequence)
                        throw .protocolViolation(operation: "read netlink reply",
                                                 reason: "a reply with sequence number \(message.sequence), but this exchange "
                                                     + "uses \(window.begin)…\(window.end) (type \(message.type))")
                    }
                }
            }
            finished = true
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

    func send(_ datagram: [UInt8]) throws(NetlinkError) {
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        kernel.nl_pid = Self.kernelPortID
        _ = try syscall {
            datagram.withUnsafeBytes { bytes in
                withUnsafePointer(to: &kernel) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
        }.get { NetlinkError.system(operation: "send to netlink socket in \(namespace)", errno: $0) }
    }

    /// Reads one datagram from the kernel into `buffer` and returns its length. Datagrams from any other sender
    /// (another process can send to our port id) are dropped unread.
    private func receive(into buffer: UnsafeMutableRawBufferPointer) throws(NetlinkError) -> Int {
        while true {
            var sender = sockaddr_nl()
            var length = socklen_t(MemoryLayout<sockaddr_nl>.size)
            let received = withUnsafeMutablePointer(to: &sender) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    syscall { recvfrom(fd, buffer.baseAddress, buffer.count, Int32(MSG_TRUNC), address, &length) }
                }
            }
            switch received {
            case .success(let n) where n > buffer.count:
                throw .protocolViolation(operation: "read netlink reply",
                                         reason: "datagram of \(n) bytes truncated to \(buffer.count)")
            case .success(0):
                throw .protocolViolation(operation: "read netlink reply", reason: "empty datagram")
            case .success(let n):
                guard sender.nl_family == sa_family_t(AF_NETLINK), sender.nl_pid == Self.kernelPortID else { continue }
                return n
            case .failure(.resourceTemporarilyUnavailable):
                throw .protocolViolation(operation: "read netlink reply",
                                         reason: "no answer from the kernel in \(Self.receiveTimeoutSeconds) s")
            case .failure(.noBufferSpace):
                throw .system(operation: "read netlink reply (receive buffer overrun, answers lost)", errno: .noBufferSpace)
            case .failure(let e):
                throw .system(operation: "read netlink reply", errno: e)
            }
        }
    }
}

// MARK: test hooks

extension NetlinkSocket {
    /// The first sequence number the next exchange will use.
    var nextSequence: UInt32 { state.withLock { $0.sequence &+ 2 } }

    /// Sends one request (NLM_F_REQUEST|NLM_F_ACK added) with `sequence`, outside any exchange: its answers reach
    /// the receive loop as replies to no request of this socket.
    func sendUnpaired(_ message: MessageBuilder, sequence: UInt32) throws(NetlinkError) {
        try state.withLock { _ throws(NetlinkError) in
            try send(MessageBuilder(copying: message, addingFlags: UInt16(NLM_F_REQUEST | NLM_F_ACK)).finished(sequence: sequence))
        }
    }
}

extension MessageBuilder {
    init(copying other: MessageBuilder, addingFlags extra: UInt16) {
        self = other
        setFlags(other.flags | extra)
    }
}
