import Agent
import Namespace
import Netlink
import Synchronization
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The agent's HTTP responder with real sockets on the loopback of a throwaway namespace: well-formed requests,
/// every refusal, and clients that are slow, half-open, too many or hostile.
@Suite(.enabled(if: isRoot, "needs root"))
struct HTTPResponderTests {
    /// A client socket connected to the responder, made inside the namespace. Reads time out after 5 s (a hang
    /// fails the test instead of stalling it).
    struct Client {
        let fd: Int32

        init(_ ns: NetworkNamespace, _ address: IPAddress, _ port: UInt16) throws {
            let target = SocketAddress(address, port: port)
            fd = try ns.socket(domain: target.domain, type: Int32(SOCK_STREAM.rawValue), protocol: 0)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = try syscall { target.withSockaddr { connect(fd, $0, $1) } }.get { $0 }
        }

        func send(_ text: String) throws { try send(Array(text.utf8)) }

        func send(_ bytes: [UInt8]) throws {
            var sent = 0
            while sent < bytes.count {
                sent += try syscall { bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) } }.get { $0 }
            }
        }

        func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }

        /// Everything until the responder closes (end of file); throws on a reset or the 5 s timeout.
        func readAll() throws -> String {
            var data: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = try syscall { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }.get { $0 }
                if n == 0 { return String(decoding: data, as: UTF8.self) }
                data += buffer[0..<n]
            }
        }

        func close() { _ = Glibc.close(fd) }
    }

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: String

        init(_ text: String) {
            let parts = text.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
            let lines = (parts.first ?? "").split(separator: "\r\n")
            status = Int((lines.first ?? "").split(separator: " ").dropFirst().first ?? "") ?? 0
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].drop(while: { $0 == " " }))
            }
            self.headers = headers
            body = parts.count > 1 ? String(parts[1]) : ""
        }
    }

    /// A namespace with lo up and a responder listening on `address` port 0, serving the agent's own endpoints
    /// (fresh metrics, a loop that is not running); stopped and gone afterwards.
    func withResponder(_ address: IPAddress = .v4(0x7f00_0001), limits: HTTPResponder.Limits = .init(),
                       _ body: (NetworkNamespace, HTTPResponder) throws -> Void) throws {
        try withNamespaces(1) { ns in
            try NetlinkSocket(namespace: ns[0]).setLink("lo", up: true)
            let responder = try HTTPResponder(address: address, port: 0, namespace: ns[0], limits: limits,
                                              handler: AgentEndpoints.handler(AgentMetrics(), AgentHealth()))
            let stopped = Atomic<Bool>(false)
            try responder.start { stopped.store(true, ordering: .sequentiallyConsistent) }
            defer {
                responder.stop()
                #expect(waitUntil(timeout: 5) { stopped.load(ordering: .sequentiallyConsistent) }, "the responder's thread ended")
            }
            try body(ns[0], responder)
        }
    }

    func get(_ ns: NetworkNamespace, _ r: HTTPResponder, _ request: String) throws -> Answer {
        let client = try Client(ns, r.address, r.port)
        defer { client.close() }
        try client.send(request)
        return Answer(try client.readAll())
    }

    @Test func theEndpointsAnswerAndCloseTheConnection() throws {
        try withResponder { ns, r in
            #expect(r.port != 0)
            let metrics = try get(ns, r, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(metrics.status == 200)
            #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(metrics.headers["connection"] == "close")
            #expect(metrics.headers["content-length"] == "\(metrics.body.utf8.count)")
            #expect(metrics.headers["date"]?.hasSuffix(" GMT") == true)
            #expect(metrics.body.contains("returnpath_policy_valid "))
            // The loop of this AgentHealth never ran: not alive, not ready, each with its reason.
            let health = try get(ns, r, "GET /healthz HTTP/1.0\r\n\r\n")
            #expect(health.status == 503 && health.body == "the event loop is not running\n")
            #expect(health.headers["content-type"] == "text/plain")
            let ready = try get(ns, r, "GET /readyz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(ready.status == 503 && ready.body == "no apply has succeeded yet\n")
            // Bare LF line ends and an absolute-form target are taken too.
            #expect(try get(ns, r, "GET http://127.0.0.1/metrics HTTP/1.1\nHost: 127.0.0.1\n\n").status == 200)
        }
    }

    @Test func headAnswersTheHeadWithoutTheBody() throws {
        try withResponder { ns, r in
            let answer = try get(ns, r, "HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(answer.status == 200)
            #expect(Int(answer.headers["content-length"] ?? "") ?? 0 > 0)
            #expect(answer.body.isEmpty)
        }
    }

    @Test func otherPathsMethodsAndMalformedRequestsAreRefused() throws {
        try withResponder { ns, r in
            #expect(try get(ns, r, "GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n").status == 404)
            #expect(try get(ns, r, "GET /metrics/ HTTP/1.1\r\nHost: h\r\n\r\n").status == 404)
            let post = try get(ns, r, "POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
            #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD")
            #expect(try get(ns, r, "DELETE /readyz HTTP/1.1\r\nHost: h\r\n\r\n").status == 405)
            for bad in ["GET /metrics HTTP/1.1\r\n\r\n",                       // HTTP/1.1 without Host
                        "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
                        "GET  /metrics HTTP/1.1\r\nHost: h\r\n\r\n",          // two spaces
                        "GET /metrics\r\n\r\n",                                // HTTP/0.9
                        "GET metrics HTTP/1.1\r\nHost: h\r\n\r\n",            // not a path
                        "G(T /metrics HTTP/1.1\r\nHost: h\r\n\r\n",           // not a token
                        "GET /metrics HTTP/1.1\r\nHost : h\r\n\r\n",          // space before the colon
                        "GET /metrics HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", // obs-fold
                        "GET /metrics HTTP/1.1\r\nHost: h\u{1}\r\n\r\n",      // a control character
                        "GET /m\u{e9}trics HTTP/1.1\r\nHost: h\r\n\r\n",      // not ASCII
                        "\u{16}\u{3}\u{1}\u{0}\u{c8}\u{1}\r\n\r\n"] {         // TLS, or noise
                #expect(try get(ns, r, bad).status == 400, "\(bad.debugDescription)")
            }
            #expect(try get(ns, r, "GET /metrics HTTP/2.0\r\nHost: h\r\n\r\n").status == 505)
            let huge = try get(ns, r, "GET /metrics HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n")
            #expect(huge.status == 431)
        }
    }

    @Test func aRequestInPiecesAHalfClosedClientAndAPipelinedSecondRequest() throws {
        try withResponder { ns, r in
            let slow = try Client(ns, r.address, r.port)
            defer { slow.close() }
            for byte in "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n".utf8 { try slow.send([byte]) }
            #expect(Answer(try slow.readAll()).status == 200)

            let halfClosed = try Client(ns, r.address, r.port)
            defer { halfClosed.close() }
            try halfClosed.send("GET /healthz HTTP/1.0\r\n\r\n")
            halfClosed.shutdownWrite()
            #expect(Answer(try halfClosed.readAll()).status == 503)

            // One request per connection: the second is never answered, the connection closes after the first.
            let pipelined = try Client(ns, r.address, r.port)
            defer { pipelined.close() }
            try pipelined.send("GET /nothing HTTP/1.1\r\nHost: h\r\n\r\nGET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
            let text = try pipelined.readAll()
            #expect(text.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
            #expect(text.ranges(of: "HTTP/1.1 ").count == 1)

            // A body the responder never reads (32 KiB after the head) does not cost the client its answer.
            let upload = try Client(ns, r.address, r.port)
            defer { upload.close() }
            try upload.send("PUT /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 32768\r\n\r\n")
            try upload.send([UInt8](repeating: 0x61, count: 32768))
            #expect(Answer(try upload.readAll()).status == 405)
        }
    }

    @Test func aSilentClientIsClosedAfterTheTimeout() throws {
        var limits = HTTPResponder.Limits()
        limits.timeoutSeconds = 0.5
        try withResponder(limits: limits) { ns, r in
            // Part of a head and nothing more: closed without an answer (the client's own timeout is 5 s).
            let silent = try Client(ns, r.address, r.port)
            defer { silent.close() }
            try silent.send("GET /metr")
            #expect(try silent.readAll() == "")
        }
    }

    @Test func idleClientsNeverLockOthersOut() throws {
        var limits = HTTPResponder.Limits()
        limits.timeoutSeconds = 60   // longer than the test: only making room can close them
        limits.maximumConnections = 4
        try withResponder(limits: limits) { ns, r in
            // Four idle connections fill the table; a fifth closes the oldest and is answered.
            var idle: [Client] = []
            defer { for c in idle { c.close() } }
            for _ in 0..<4 {
                idle.append(try Client(ns, r.address, r.port))
                try idle.last?.send("G")
            }
            #expect(try get(ns, r, "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").status == 200)
            #expect(try idle[0].readAll() == "", "the oldest idle connection made room")
            // The others are still open: they are answered when they finish their request.
            try idle[3].send("ET /readyz HTTP/1.0\r\n\r\n")
            #expect(Answer(try idle[3].readAll()).status == 503)
        }
    }

    @Test func ipv6AndAnAddressInUse() throws {
        try withResponder(.v6(0, 1)) { ns, r in
            #expect(r.url.hasPrefix("http://[::1]:"))
            let answer = try get(ns, r, "GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n")
            #expect(answer.status == 200)
            // Another responder on the same port is refused with the kernel's word for it.
            var refusal = ""
            do {
                _ = try HTTPResponder(address: r.address, port: r.port, namespace: ns, handler: { _ in HTTPResponse(status: 200, body: "") })
            } catch {
                refusal = "\(error)"
            }
            #expect(refusal == "metrics endpoint: bind [::1]:\(r.port): Address already in use", "\(refusal)")
        }
    }
}
