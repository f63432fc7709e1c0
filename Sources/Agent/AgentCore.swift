import CLinux
import Dispatch
import Logging
import Namespace
import Netlink
import ReturnRouting
import Synchronization
import SystemPackage
import YAMLFile
#if canImport(Glibc)
import Glibc
#endif

/// How the agent runs.
public struct AgentConfiguration: Sendable {
    public var namespace: NetworkNamespace
    /// The policy file (watched); nil with `policy`.
    public var policyPath: String?
    /// A fixed policy (derived from a lab) when there is no file.
    public var policy: Policy?
    /// The node's name for spec.nodes, and where it came from (--node, NODE_NAME, lab host, hostname).
    public var node: (name: String, source: String) = ("localhost", "hostname")
    /// --strategy; else the policy's, else source.
    public var strategy: Strategy?
    /// --resync-interval: the periodic full reconcile, ± 10 % jitter, never reset by events.
    public var resyncInterval: Double = 60
    public var removeOnExit = false
    /// A burst of events is one reconcile: it runs once no event came for `quietPeriod`, or `maximumDelay` after
    /// the burst's first event. While events keep coming (a flood), each further reconcile waits twice as long,
    /// up to `floodDelay`; the first quiet moment resets it.
    public var quietPeriod: Double = 0.005
    public var maximumDelay: Double = 0.100
    public var floodDelay: Double = 1.0
    /// After an inotify event, the file is read this much later (an editor's save is several events).
    public var policySettle: Double = 0.020
    /// The event sockets' receive buffer (bytes). Overflowing it costs a reopen and a full reconcile.
    public var receiveBuffer: Int = 16 << 20
    /// How long to wait for an apply or remove that holds the namespace's lock (another agent is refused at once).
    public var lockWait: Double = 10

    public init(namespace: NetworkNamespace) { self.namespace = namespace }
}

/// The agent's engine: holds the namespace's apply lock, the router, the policy in force and the event sockets,
/// and runs the event loop on a thread of its own (poll(2) on the event sockets, the inotify descriptor and a wake
/// pipe, with the time of the next due reconcile as timeout: idle costs no CPU).
///
/// Everything but `requestStop`, `requestReload`, `metrics` and `health` belongs to the loop thread (or to
/// `start`, before the loop exists): hence `@unchecked Sendable`.
public final class AgentCore: @unchecked Sendable {
    public let configuration: AgentConfiguration
    public let metrics: AgentMetrics
    public let health = AgentHealth()
    let logger: Logger
    let router: ReturnRouter
    let lock: ApplyLock
    /// Link and address dumps (which interfaces can carry their return path now).
    let inspector: NetlinkSocket

    // Loop state.
    /// The policy file as read (nil for a fixed policy); `policy` is it resolved for this node.
    var document: PolicyDocument?
    /// Why entries of the document do not resolve on this node now (FILE:LINE: …): they are left out.
    var unresolved: [String] = []
    var policy: Policy
    var policyText: String?
    var strategy: Strategy
    /// The configured policy (servicesFrom resolved) and strategy of the last successful reconcile: objects
    /// re-added while it stays the same are repairs.
    var lastInput: (Policy, Strategy)?
    var classifier = EventClassifier()
    var events: EventSocket?
    var watcher: PolicyWatcher?
    var leftOut: [String: String] = [:]
    var reconcileCount = 0
    /// Watches the routers of interfaces with several; made when the policy first has one.
    var prober: RouterProber?

    struct Commands { var stop = false; var reload = false; var gateway = false }
    let commands = Mutex(Commands())
    private let wakeRead: Int32
    let wakeWrite: Int32
    private let finished = Mutex<(@Sendable () -> Void)?>(nil)

    /// Reads the policy, takes the lock, subscribes to events, and makes the first apply. Throws when the agent
    /// must not run: an invalid policy (exit 2), a busy namespace, a kernel that refuses the sockets. A first apply
    /// that fails for another reason (a conflict, a kernel error) is logged and retried on events and resyncs.
    public static func start(_ configuration: AgentConfiguration, logger: Logger,
                             metrics: AgentMetrics = AgentMetrics()) throws(AgentError) -> (AgentCore, Result<Report, ApplyError>) {
        let core = try AgentCore(configuration, logger: logger, metrics: metrics)
        let first = core.reconcile(.start)
        if case .failure(let error) = first, error.isInvalid { throw .apply(error) }
        return (core, first)
    }

    private init(_ configuration: AgentConfiguration, logger: Logger, metrics: AgentMetrics) throws(AgentError) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        if let path = configuration.policyPath {
            let text: String
            do { text = try YAMLReader.read(path) } catch { throw .policy(error.description) }
            let parsed: PolicyDocument
            do { parsed = try PolicyFile.parseDocument(text, file: path) } catch { throw .policy(error.description) }
            document = parsed
            policy = PolicyResolver.fixed(parsed)
            policyText = text
        } else if let given = configuration.policy {
            policy = given
        } else {
            throw .policy("no policy: give -f POLICY.yaml (or --lab NAME to derive one from a lab)")
        }
        strategy = configuration.strategy ?? policy.strategy ?? policy.defaultStrategy.strategy
        metrics.setPolicyValid(true)
        do throws(ApplyError) {
            router = try ReturnRouter(namespace: configuration.namespace)
            lock = try Self.takeLock(router, wait: configuration.lockWait)
        } catch {
            throw .apply(error)
        }
        do throws(NetlinkError) {
            inspector = try NetlinkSocket(namespace: configuration.namespace)
        } catch {
            throw .system("open rtnetlink in \(configuration.namespace): \(error)", error.errno ?? .ioError)
        }
        var fds: [Int32] = [-1, -1]
        _ = try syscall { clinux_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) }.get { AgentError.system("pipe2", $0) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        if let document, document.needsNode {
            policy = resolve(document)
            strategy = configuration.strategy ?? policy.strategy ?? policy.defaultStrategy.strategy
        }
        if let path = configuration.policyPath { watcher = try PolicyWatcher(path: path) }
        classifier.watch(policy)
        classifier.followsNode = document?.needsNode ?? false
        // Subscribe before the first apply: nothing that happens after it can be missed.
        try openEvents()
    }

    deinit {
        prober?.stop()
        close(wakeRead)
        close(wakeWrite)
    }

    /// The lock for the agent's lifetime. Another agent is refused at once; an apply or remove in progress is
    /// waited for (`wait`).
    private static func takeLock(_ router: ReturnRouter, wait: Double) throws(ApplyError) -> ApplyLock {
        do {
            return try router.lock(role: "agent", wait: 0)
        } catch {
            if case .busy(_, let holder, _) = error, holder?.hasSuffix(", agent") == true {
                throw ApplyError.busy(namespace: "\(router.namespace)", holder: holder, waited: 0)
            }
            guard case .busy = error else { throw error }
        }
        return try router.lock(role: "agent", wait: wait)
    }

    private func openEvents() throws(AgentError) {
        events = nil
        do {
            events = try EventSocket(namespace: configuration.namespace, receiveBuffer: configuration.receiveBuffer)
            classifier.learn(try inspector.links())
        } catch {
            events = nil
            throw .system("subscribe to netlink events in \(configuration.namespace): \(error)", error.errno ?? .ioError)
        }
    }

    /// The strategy in force (before the loop starts, or from the loop thread).
    public var strategyInForce: Strategy { strategy }

    // MARK: the loop

    /// Starts the loop on its own thread; `done` runs on that thread when it has ended (after --remove-on-exit).
    public func startLoop(done: @escaping @Sendable () -> Void) throws(AgentError) {
        finished.withLock { $0 = done }
        health.loop(running: true)
        do {
            try startThread(name: "rp-agent", stackSize: 8 << 20) { [self] in
                runLoop()
                finish()
                health.loop(running: false)
                let done = finished.withLock { $0 }
                done?()
            }
        } catch {
            health.loop(running: false)
            throw .system("start the event loop's thread (pthread_create)", error)
        }
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// The interval ± 10 %.
    func jittered() -> UInt64 {
        let seconds = configuration.resyncInterval * Double.random(in: 0.9...1.1)
        return UInt64(seconds * 1e9)
    }

    func runLoop() {
        var debouncer = Debouncer(quietSeconds: configuration.quietPeriod, shortestSeconds: configuration.maximumDelay,
                                  ceilingSeconds: configuration.floodDelay)
        let settle = UInt64(configuration.policySettle * 1e9)
        var nextResync = Self.now() + jittered()
        var policyDue: UInt64?
        var reopenDue: UInt64?
        var received: [NetlinkEvent] = []

        func note(_ trigger: Trigger, immediate: Bool = false) {
            debouncer.note(trigger, at: Self.now(), immediate: immediate)
        }

        while true {
            let request = commands.withLock { c -> Commands in
                let taken = c
                c = Commands(stop: c.stop)
                return taken
            }
            if request.stop { break }
            if request.gateway { note(.gateway, immediate: true) }
            if request.reload {
                logger.notice("SIGHUP: reloading the policy and reconciling everything")
                switch reloadPolicy(force: true) {
                case .changed, .unchanged: note(.sighup, immediate: true)
                case .invalid: note(.sighup, immediate: true)   // the last good policy, checked everywhere
                }
            }

            // Wait for the earliest of: the pending reconcile, the policy file settling, a reopen, the resync.
            var deadline = nextResync
            if let due = debouncer.deadline { deadline = min(deadline, due) }
            if let policyDue { deadline = min(deadline, policyDue) }
            if let reopenDue { deadline = min(deadline, reopenDue) }
            let now = Self.now()
            let timeout = deadline <= now ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)

            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let eventFDs = events?.descriptors ?? []
            for fd in eventFDs { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            if let watcher { fds.append(pollfd(fd: watcher.descriptor, events: Int16(POLLIN), revents: 0)) }
            var ready: Int32 = 0
            switch syscall(retryOnInterrupt: false, { poll(&fds, nfds_t(fds.count), timeout) }) {
            case .success(let count): ready = count
            case .failure(.interrupted): break   // a signal: the loop looks at its commands again
            case .failure(let error): logger.error("poll failed: \(error)")
            }
            if ready > 0 {
                if fds[0].revents != 0 {
                    var sink = [UInt8](repeating: 0, count: 64)
                    while sink.withUnsafeMutableBytes({ Glibc.read(wakeRead, $0.baseAddress, $0.count) }) > 0 {}
                }
                if let socket = events {
                    for (i, fd) in eventFDs.enumerated() where fds[1 + i].revents != 0 {
                        received.removeAll(keepingCapacity: true)
                        do {
                            try socket.drain(fd, into: &received)
                        } catch {
                            let reason: ResyncReason = error.errno == .noBufferSpace ? .enobufs : .error
                            logger.warning("event socket: \(error); reopening it and reconciling everything",
                                           metadata: ["reason": "\(reason.rawValue)"])
                            metrics.resynced(reason)
                            events = nil
                            reopenDue = 0
                        }
                        for event in received {
                            if let trigger = classifier.classify(event) {
                                logger.debug("event \(event) → \(trigger.rawValue)")
                                note(trigger)
                            }
                        }
                        if events == nil { break }
                    }
                }
                if let watcher, let slot = fds.indices.last, fds[slot].revents != 0, watcher.drain() {
                    policyDue = Self.now() + settle
                }
            }

            var current = Self.now()
            if let due = reopenDue, current >= due {
                do {
                    try openEvents()
                    reopenDue = nil
                    note(.overflow, immediate: true)
                } catch {
                    logger.error("\(error); trying again in 1 s")
                    reopenDue = current + 1_000_000_000
                }
            }
            if let due = policyDue, current >= due {
                policyDue = nil
                if reloadPolicy(force: false) == .changed { note(.policy, immediate: true) }
            }
            current = Self.now()
            if let trigger = debouncer.due(at: current) { reconcile(trigger) }
            current = Self.now()
            if current >= nextResync {
                reconcile(.resync)
                nextResync &+= jittered()
                if nextResync <= Self.now() { nextResync = Self.now() + jittered() }
            }
        }
    }

    /// After the loop: --remove-on-exit removes what apply installed; the lock goes with the process.
    private func finish() {
        events = nil
        prober?.stop()
        guard configuration.removeOnExit else {
            logger.notice("stopping; the fix stays in place (--remove-on-exit removes it)")
            return
        }
        do {
            let report = try router.remove(dryRun: false)
            logger.notice("stopping: removed the fix", metadata: [
                "removed": "\(report.removed)", "changes": "\(Self.summary(report))",
            ])
        } catch {
            logger.error("stopping: remove failed: \(error)")
        }
    }

}
