import FoundationEssentials
import Netlink
import Prometheus
import ReturnRouting
import Synchronization

/// The agent's metrics (swift-prometheus), named by Prometheus conventions: `returnpath_` prefix, base units,
/// `_total` for counters. Every labelled series exists from the start (at 0), so a scrape shows them all.
public final class AgentMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let reconciles: [Trigger: Counter]
    private let repairs: [Change.Kind: Counter]
    private let owned: [Change.Kind: Gauge]
    private let resyncs: [ResyncReason: Counter]
    private let failures: [String: Counter]
    private let duration: DurationHistogram
    private let policyValid: Gauge
    private let lastSuccess: Gauge
    /// The label sets of returnpath_interface_active and returnpath_gateway_up seen so far: a series whose
    /// interface or router left the policy stays, at 0.
    private let seen = Mutex<(interfaces: Set<String>, gateways: Set<[String]>)>(([], []))

    public static let failureReasons = ["conflict", "invalid", "error"]

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        reconciles = Dictionary(uniqueKeysWithValues: Trigger.allCases.map {
            ($0, registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "reconciles", unitName: "total", helpText: "Reconciles run (apply with the policy in force), by what triggered them."), labels: [("trigger", $0.rawValue)]))
        })
        let kinds: [Change.Kind] = [.rule, .route, .nft, .sysctl]
        repairs = Dictionary(uniqueKeysWithValues: kinds.map {
            ($0, registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "repairs", unitName: "total", helpText: "Owned objects re-added because something removed them (the policy had not changed)."), labels: [("kind", $0.rawValue)]))
        })
        owned = Dictionary(uniqueKeysWithValues: kinds.map {
            ($0, registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "owned", unitName: "objects", helpText: "Objects returnpath owns in the namespace after the last successful reconcile."), labels: [("kind", $0.rawValue)]))
        })
        resyncs = Dictionary(uniqueKeysWithValues: ResyncReason.allCases.map {
            ($0, registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "event_resyncs", unitName: "total", helpText: "Event sockets reopened and everything reconciled, by why."), labels: [("reason", $0.rawValue)]))
        })
        failures = Dictionary(uniqueKeysWithValues: Self.failureReasons.map {
            ($0, registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "reconcile_failures", unitName: "total", helpText: "Reconciles that failed: a conflict (a foreign object where returnpath owns things), an invalid policy, or another error."), labels: [("reason", $0)]))
        })
        duration = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "reconcile_duration", unitName: "seconds",
                                             helpText: "How long a reconcile took (read, diff and changes)."),
            buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                      .milliseconds(2500), .seconds(5)])
        policyValid = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "policy", unitName: "valid", helpText: "1 when the policy file last read is valid and in force, 0 when it was refused (the last good one stays)."))
        lastSuccess = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "last_reconcile_success_timestamp", unitName: "seconds", helpText: "Unix time of the last successful reconcile."))
    }

    func reconciled(_ trigger: Trigger, seconds: Double) {
        reconciles[trigger]?.increment()
        duration.record(.nanoseconds(Int64(seconds * 1e9)))
    }

    func succeeded(at time: Date) { lastSuccess.set(time.timeIntervalSince1970) }
    func failed(_ reason: String) { failures[reason]?.increment() }
    func repaired(_ kind: Change.Kind, count: Int) { repairs[kind]?.increment(by: Int64(count)) }
    func setOwned(_ kind: Change.Kind, _ count: Int) { owned[kind]?.set(Double(count)) }
    func setPolicyValid(_ valid: Bool) { policyValid.set(valid ? 1.0 : 0.0) }
    func resynced(_ reason: ResyncReason) { resyncs[reason]?.increment() }

    /// `returnpath_interface_active{interface}`: 1 while the interface carries its return path, 0 while it is left
    /// out (down, no address on its gateways' subnet, gone). `returnpath_gateway_up{interface,gateway}`: 1 while the
    /// router is used (every router of an active interface: no router is skipped yet), 0 otherwise.
    func setInterfaces(_ all: [Policy.Interface], active: Set<String>, skipped: Set<[String]> = []) {
        seen.withLock { seen in
            var interfaces: [String: Bool] = [:], gateways: [[String]: Bool] = [:]
            for name in seen.interfaces { interfaces[name] = false }
            for labels in seen.gateways { gateways[labels] = false }
            for entry in all {
                interfaces[entry.name] = active.contains(entry.name)
                for router in entry.routers {
                    let labels = [entry.name, router.description]
                    gateways[labels] = active.contains(entry.name) && !skipped.contains(labels)
                }
            }
            for (name, up) in interfaces {
                registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "interface", unitName: "active", helpText: "1 while the policy interface carries its return path, 0 while it is left out."), labels: [("interface", name)]).set(up ? 1.0 : 0.0)
            }
            for (labels, up) in gateways {
                registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "returnpath", metricName: "gateway", unitName: "up", helpText: "1 while the router is used for the interface's replies, 0 while it is skipped."), labels: [("interface", labels[0]), ("gateway", labels[1])]).set(up ? 1.0 : 0.0)
            }
            seen.interfaces.formUnion(interfaces.keys)
            seen.gateways.formUnion(gateways.keys)
        }
    }

    /// The Prometheus text exposition.
    public func render() -> String { registry.emitToString() }
}
