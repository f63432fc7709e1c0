import FlyingFox
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

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
        await withTaskCancellationOrGracefulShutdownHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                core.startLoop { continuation.resume() }
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
/// reconcile did not fail), on FlyingFox. It listens in the agent's own namespace (the node's, with hostNetwork).
struct HTTPService: Service {
    let core: AgentCore
    let address: MetricsAddress
    let logger: Logger

    func run() async throws {
        let server: HTTPServer
        do {
            if address.isIPv6 {
                server = HTTPServer(address: try .inet6(ip6: address.host, port: address.port), timeout: 5, logger: .disabled)
            } else {
                server = HTTPServer(address: try .inet(ip4: address.host, port: address.port), timeout: 5, logger: .disabled)
            }
        } catch {
            throw AgentError.metrics("\(address): \(error)")
        }
        let metrics = core.metrics, health = core.health
        await server.appendRoute("GET /metrics") { _ in
            HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: Data(metrics.render().utf8))
        }
        await server.appendRoute("GET /healthz") { _ in
            let (ok, reason) = health.alive
            return HTTPResponse(statusCode: ok ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                                body: Data((reason + "\n").utf8))
        }
        await server.appendRoute("GET /readyz") { _ in
            let (ok, reason) = health.ready
            return HTTPResponse(statusCode: ok ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                                body: Data((reason + "\n").utf8))
        }
        let logger = self.logger, address = self.address
        let announce = Task {
            do {
                try await server.waitUntilListening(timeout: 5)
                if case .ip4(let host, let port)? = await server.listeningAddress {
                    logger.notice("metrics on http://\(host):\(port)/metrics", metadata: ["port": "\(port)"])
                } else if case .ip6(let host, let port)? = await server.listeningAddress {
                    logger.notice("metrics on http://[\(host)]:\(port)/metrics", metadata: ["port": "\(port)"])
                }
            } catch is CancellationError {
                return   // stopping, or the server failed (and says why)
            } catch {
                logger.error("metrics endpoint \(address) is not listening: \(error)")
            }
        }
        defer { announce.cancel() }
        try await withGracefulShutdownHandler {
            do {
                try await server.run()
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                throw AgentError.metrics("\(address): \(error)")
            }
        } onGracefulShutdown: {
            Task { await server.stop(timeout: 0) }
        }
    }
}
