import Logging
import Netlink
import ServiceLifecycle
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

/// Runs a started agent until SIGTERM or SIGINT (swift-service-lifecycle's graceful shutdown), with SIGHUP as
/// reload and, when `metricsAddress` is given, the HTTP endpoints.
public enum AgentRunner {
    /// Returns when the agent has stopped (after --remove-on-exit, if given).
    public static func run(_ core: AgentCore, metricsAddress: MetricsAddress?, logger: Logger) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: LoopService(core: core)),
            .init(service: HangupService(core: core), successTerminationBehavior: .ignore),
        ]
        if let metricsAddress {
            services.append(.init(service: HTTPService(core: core, address: metricsAddress, logger: logger)))
        }
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      cancellationSignals: [], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(5)
        let group = ServiceGroup(configuration: configuration)
        try await group.run()
    }
}

/// The event loop (a thread of its own) as a service: graceful shutdown (or the group's cancellation, when another
/// service failed) asks it to stop and waits for it.
struct LoopService: Service {
    let core: AgentCore

    func run() async throws {
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                do { try core.startLoop { continuation.resume() } } catch { continuation.resume(throwing: error) }
            }
        } onCancelOrGracefulShutdown: {
            core.requestStop()
        }
    }
}

/// SIGHUP: reload the policy and reconcile everything.
struct HangupService: Service {
    let core: AgentCore

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            core.requestReload()
        }
    }
}

/// Where the endpoints listen: `ADDR:PORT` (IPv4) or `[ADDR]:PORT` (IPv6); port 0 picks a free one (logged).
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var isIPv6: Bool

    public init?(_ text: String) {
        let hostPart: Substring, portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
            isIPv6 = true
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            isIPv6 = false
        }
        guard let port = UInt16(portPart) else { return nil }
        var v4 = in_addr(), v6 = in6_addr()
        let valid = isIPv6 ? inet_pton(AF_INET6, String(hostPart), &v6) == 1 : inet_pton(AF_INET, String(hostPart), &v4) == 1
        guard valid else { return nil }
        host = String(hostPart)
        self.port = port
    }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// /metrics (Prometheus text), /healthz (the event loop is alive), /readyz (the first apply succeeded and the last
/// reconcile did not fail), on the agent's own HTTP responder (a thread with poll(2)). It listens in the agent's
/// own namespace (the node's, with hostNetwork).
struct HTTPService: Service {
    let core: AgentCore
    let address: MetricsAddress
    let logger: Logger

    func run() async throws {
        guard let ip = IPAddress(address.host) else { throw AgentError.metrics("\(address): not a numeric address") }
        let responder = try HTTPResponder(address: ip, port: address.port, handler: AgentEndpoints.handler(core.metrics, core.health))
        logger.notice("metrics on \(responder.url)/metrics", metadata: ["port": "\(responder.port)"])
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                do { try responder.start { continuation.resume() } } catch { continuation.resume(throwing: error) }
            }
        } onCancelOrGracefulShutdown: {
            responder.stop()
        }
    }
}

/// What the endpoints answer.
public enum AgentEndpoints {
    public static let prometheusText = "text/plain; version=0.0.4; charset=utf-8"

    /// GET (and HEAD) of the three paths; another method on them 405, any other path 404.
    public static func handler(_ metrics: AgentMetrics, _ health: AgentHealth) -> HTTPResponder.Handler {
        { request in
            let answer: () -> HTTPResponse
            switch request.path {
            case "/metrics": answer = { HTTPResponse(status: 200, contentType: prometheusText, body: metrics.render()) }
            case "/healthz": answer = { plain(health.alive) }
            case "/readyz": answer = { plain(health.ready) }
            default: return HTTPResponse(status: 404, body: "not found: \(request.path) (the agent serves /metrics, /healthz and /readyz)\n")
            }
            guard request.method == "GET" || request.method == "HEAD" else {
                return HTTPResponse(status: 405, body: "\(request.method) is not allowed on \(request.path): GET or HEAD\n", allow: "GET, HEAD")
            }
            return answer()
        }
    }

    static func plain(_ state: (ok: Bool, reason: String)) -> HTTPResponse {
        HTTPResponse(status: state.ok ? 200 : 503, contentType: "text/plain", body: state.reason + "\n")
    }
}
