import Agent
import ArgumentParser
import Dispatch
import FoundationEssentials
import Lab
import Logging
import Namespace
import ReturnRouting
import Synchronization
#if canImport(Glibc)
import Glibc
import TextFormat
#endif

enum LogFormat: String, ExpressibleByArgument, Sendable {
    case text, json
}

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Apply a policy, then keep the namespace equal to it until stopped (events, policy file, resync).",
        discussion: """
            Starts like apply (same engine, same output), holds the namespace's apply lock for its lifetime, and \
            repairs what links going down and up, deleted rules and routes, or a flushed nftables table undo, within \
            milliseconds. The policy file is watched (inotify on its directory: in-place writes, rename-over, \
            Kubernetes ConfigMap updates); SIGHUP reloads it; an invalid one is refused and the last good one stays. \
            SIGTERM/SIGINT: exit 0, leaving the fix in place (--remove-on-exit removes it). See docs/agent.md.
            """)

    @Option(name: .shortAndLong, help: "Policy file (YAML), watched for changes. With --lab, default: derived from the lab's topology.")
    var file: String?

    @Option(name: .long, help: "static, source, mark or ingress. Default: the policy's, else source (ingress when a service is announced through several interfaces).")
    var strategy: Strategy?

    @OptionGroup var target: TargetOptions

    @OptionGroup var node: NodeOption

    @Option(name: .long, help: "Serve /metrics, /healthz and /readyz on ADDR:PORT (e.g. 127.0.0.1:9712; port 0: any free port). Default: off.")
    var metricsAddress: String?

    @Option(name: .long, help: "Seconds between periodic full reconciles (± 10 % jitter; events never reset it). Default 60.")
    var resyncInterval: Double = 60

    @Flag(name: .long, help: "On SIGTERM/SIGINT, remove the fix (default: leave it in place).")
    var removeOnExit = false

    @Option(name: .long, help: "text or json (one object per line), on standard error.")
    var logFormat: LogFormat = .text

    func validate() throws {
        if !(resyncInterval >= 0.1 && resyncInterval <= 86400) { throw ValidationError("--resync-interval takes 0.1 to 86400 seconds") }
        if let metricsAddress, MetricsAddress(metricsAddress) == nil {
            throw ValidationError("--metrics-address takes ADDR:PORT or [ADDR]:PORT with a numeric address, e.g. 127.0.0.1:9712")
        }
    }

    func run() throws {
        LogSettings.json.store(logFormat == .json, ordering: .relaxed)
        var logger = Logger(label: "returnpath.agent")
        logger[metadataKey: "target"] = nil

        let (namespace, topology) = try target.resolve()
        var configuration = AgentConfiguration(namespace: namespace)
        if file == nil, let topology { configuration.policy = try target.derivedPolicy(topology) }
        if let file { configuration.policyPath = URL(fileURLWithPath: file).path }
        configuration.strategy = strategy
        configuration.node = PolicyLoading.nodeName(node, target)
        configuration.resyncInterval = resyncInterval
        configuration.removeOnExit = removeOnExit
        if let buffer = ProcessInfo.processInfo.environment["RETURNPATH_EVENT_BUFFER"].flatMap(Int.init) {
            configuration.receiveBuffer = buffer   // a test hook: a small buffer overflows (ENOBUFS)
        }
        logger[metadataKey: "namespace"] = "\(configuration.namespace)"

        let core: AgentCore
        let first: Result<Report, ApplyError>
        do {
            (core, first) = try AgentCore.start(configuration, logger: logger)
        } catch {
            throw fail(error.description, code: error.exitCode)
        }
        let chosen = strategy ?? core.strategyInForce
        switch first {
        case .success(let report):
            ReportPrinter.print(report, json: false, dryRun: false, extra: ["strategy": chosen.rawValue, "target": "\(configuration.namespace)"])
        case .failure(let error):
            printError("returnpath: \(error.description)\n")
            logger.error("the first apply failed; retrying on events and every resync", metadata: ["error": "\(error.description)"])
        }
        fflush(nil)   // the report before the logs, also when standard output is a pipe
        logger.notice("watching", metadata: [
            "strategy": "\(chosen.rawValue)", "resync_interval_s": "\(resyncInterval)",
            "policy": "\(configuration.policyPath ?? "derived from lab \(target.lab ?? "")")",
        ])

        let address = metricsAddress.flatMap(MetricsAddress.init)
        let failure = Mutex<(any Error)?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { try await AgentRunner.run(core, metricsAddress: address, logger: logger) } catch {
                failure.withLock { $0 = error }
            }
            done.signal()
        }
        done.wait()
        if let error = failure.withLock({ $0 }) {
            throw fail("\(error)", code: 1)
        }
    }

}

/// How log lines look: swift-log is bootstrapped before the arguments are parsed, so the handler factory reads
/// this when a Logger is made (`--log-format json` sets it before the agent makes its loggers).
enum LogSettings {
    static let json = Atomic<Bool>(false)
}
