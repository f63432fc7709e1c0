import Netlink

/// Simulating each row: the request (client → service, in on the interface) and the reply (service → client), in
/// the kernel's order, each asked of the kernel too; then the row's verdict.
extension Doctor {
    /// A client address for replies when no client prefix is known (TEST-NET-3, RFC 5737).
    static let genericClient = IPAddress.v4(0xcb00_710a)   // 203.0.113.10
    /// The same for IPv6 (the documentation prefix, RFC 3849): 2001:db8::10.
    static let genericClient6 = IPAddress.v6(0x2001_0db8_0000_0000, 0x10)

    static func genericClient(for family: AddressFamily) -> IPAddress { family == .inet6 ? genericClient6 : genericClient }
    static let clientPort: UInt16 = 40000

    static func representative(_ prefix: IPPrefix) -> IPAddress {
        if prefix.isHost { return prefix.address }
        if case .v4(let v) = prefix.network.address { return .v4(v + 1) }
        if case .v6(let high, let low) = prefix.network.address { return .v6(high, low + 1) }
        return prefix.address
    }

    /// The request and the reply for one announcement.
    func check(_ a: Announcement, kernel: any KernelRouteLookup) -> ReplyCheck {
        let address = Self.representative(a.service)
        let clientPrefix = a.clients.first
        let client = clientPrefix.map(Self.representative) ?? Self.genericClient(for: address.family)
        let port = a.port ?? request.servicePorts[address]
        var requestTrace: NftTrace?, requestResult: PathResult?, reverse: ReversePathCheck?, requestKernel: KernelAnswer?
        var requestMark: UInt32 = 0, ctMark: UInt32 = 0
        var forwarded: (backend: IPAddress, port: UInt16?, device: String)?
        if let interface = a.interface {
            var incoming = NftPacket(source: client, destination: address, ipProtocol: 6, sourcePort: Self.clientPort,
                                     destinationPort: port, inputInterface: interface)
            let input = path.input(incoming)
            requestTrace = input.trace
            requestResult = input.final
            reverse = input.reversePath
            requestMark = input.mark
            ctMark = input.trace.ctMarkAfter
            incoming.mark = input.mark
            // The route was looked up for the translated destination, when a nat chain DNATed it.
            let destination = input.trace.dnat?.address ?? address
            let destinationPort = input.trace.dnat.map { $0.port ?? port } ?? port
            let requestQuery = RouteQuery(destination: destination, source: client, inputInterface: interface, mark: input.mark,
                                          ipProtocol: 6, sourcePort: Self.clientPort, destinationPort: destinationPort)
            requestKernel = KernelAnswer(asking: kernel, requestQuery, expecting: input.final)
            if let dnat = input.trace.dnat, case .sent(_, let device, _) = input.final {
                forwarded = (dnat.address, dnat.port ?? port, device)
            }
        }
        if let forwarded {
            // A DNATed request went on to its backend: the reply is the backend's, arriving on that device, routed
            // (forwarded) before conntrack puts the service address back.
            let reply = NftPacket(source: forwarded.backend, destination: client, ipProtocol: 6, sourcePort: forwarded.port,
                                  destinationPort: Self.clientPort, inputInterface: forwarded.device, ctMark: ctMark,
                                  ctState: "established", ctDirection: "reply")
            let input = path.input(reply)
            let query = RouteQuery(destination: client, source: forwarded.backend, inputInterface: forwarded.device, mark: input.mark,
                                   ipProtocol: 6, sourcePort: forwarded.port, destinationPort: Self.clientPort)
            let replyKernel = KernelAnswer(asking: kernel, query, expecting: input.final)
            var row = ReplyCheck(service: a.service, address: address, port: port,
                                 backend: forwarded.backend.endpoint(port: forwarded.port ?? 0), interface: a.interface, client: client,
                                 clientPrefix: clientPrefix, requestTrace: requestTrace, requestResult: requestResult, reversePath: reverse,
                                 requestKernel: requestKernel, requestMark: requestMark, replyTrace: input.trace, replyResult: input.final,
                                 replyMark: input.mark, replyKernel: replyKernel, verdict: .unknown, reason: "")
            (row.verdict, row.reason) = verdict(row)
            return row
        }
        let socketMark = state.tcpFwmarkAccept ? requestMark : 0
        let reply = NftPacket(source: address, destination: client, ipProtocol: 6, sourcePort: port, destinationPort: Self.clientPort,
                              mark: socketMark, ctMark: ctMark, ctState: a.interface == nil ? "new" : "established",
                              ctDirection: a.interface == nil ? "original" : "reply")
        let output = path.output(reply)
        let query = RouteQuery(destination: client, source: address, mark: output.mark, ipProtocol: 6, sourcePort: port,
                               destinationPort: Self.clientPort)
        let replyKernel = KernelAnswer(asking: kernel, query, expecting: output.final)
        var row = ReplyCheck(service: a.service, address: address, port: a.port, backend: nil, interface: a.interface, client: client,
                             clientPrefix: clientPrefix,
                             requestTrace: requestTrace, requestResult: requestResult, reversePath: reverse,
                             requestKernel: requestKernel, requestMark: requestMark, replyTrace: output.trace,
                             replyResult: output.final, replyMark: output.mark, replyKernel: replyKernel, verdict: .unknown, reason: "")
        (row.verdict, row.reason) = verdict(row)
        return row
    }

    func verdict(_ row: ReplyCheck) -> (ReplyCheck.Verdict, String) {
        if let result = row.requestResult {
            switch result {
            case .refused(let errno, let reason, _): return (.unreachable, "the request is refused: \(reason) (\(errno))")
            case .dropped(let by): return (.unreachable, "the request is dropped by nftables: \(by)")
            case .sent(_, let device, _):
                if row.backend == nil { return (.unreachable, "the request is forwarded out \(device): \(row.address) is not this node's") }
            case .local: break
            }
        }
        switch row.replyResult {
        case .sent(_, let device, let gateway):
            if let gateway, state.isLocal(gateway) {
                return (.unreachable, "the reply's gateway \(gateway) is this node's own address")
            }
            guard let interface = row.interface else { return (.unknown, "leaves by \(device)") }
            return device == interface ? (.ok, "") : (.asymmetric, "leaves by \(device), not \(interface)")
        case .local: return (.unreachable, "the client address \(row.client) is local")
        case .refused(let errno, let reason, _): return (.unreachable, "\(reason) (\(errno))")
        case .dropped(let by): return (.unreachable, "the reply is dropped by nftables: \(by)")
        }
    }
}
