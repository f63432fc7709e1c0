import Netlink
import YAMLFile

/// How replies are steered back out of the interface their request came in on.
public enum Strategy: String, Sendable, CaseIterable, Codable {
    /// Routes to each interface's client prefixes via its gateway (the POC's first fix).
    case `static`
    /// Per interface a table with a default route via the gateway; per service a `from <svc>` rule.
    case source
    /// Per interface an nftables set of service addresses; packets from them get the interface's mark; one
    /// fwmark rule per interface.
    case mark
    /// Connections get their ingress interface's conntrack mark; replies get it back as packet mark; one fwmark
    /// rule per interface. Needs no service list.
    case ingress
}

/// What returnpath owns on a node: a rule priority band, a table id range, a protocol number on its rules and
/// routes, and packet-mark bits. Defaults avoid the values other tools use (shared/notes/kernel-facts.md).
public struct Ownership: Sendable, Equatable, Codable {
    /// Rules live in [priorityBase, priorityBase + priorityCount). Default 20000–29999: after OpenShift's 998 and
    /// OVN-Kubernetes' 5000/6000, before kube-router's 32764/32765 and main (32766).
    public var priorityBase: UInt32 = 20000
    public var priorityCount: UInt32 = 10000
    /// Tables live in [tableBase, tableBase + tableCount). Default 52000–52999: clear of 253–255, kube-router's
    /// 78/79, Cilium's 200–2005 and OVN-Kubernetes' 1000+.
    public var tableBase: UInt32 = 52000
    public var tableCount: UInt32 = 1000
    /// rtm_protocol / FRA_PROTOCOL of everything apply installs.
    public var proto: UInt8 = 212
    /// Packet- and conntrack-mark bits (mark, ingress). Default bits 25–27: clear of kube-proxy's 0x4000/0x8000,
    /// Cilium's 0x0f00 and mwan3's 0x3f00; Calico's default mask 0xffff0000 covers them: change it there.
    public var markMask: UInt32 = 0x0e00_0000
    /// Allow mark bits that overlap kube-proxy's 0x4000/0x8000.
    public var allowKubeProxyMarks = false

    public init() {}

    public var routeProtocol: RouteProtocol { RouteProtocol(rawValue: proto) }
    public func ownsPriority(_ p: UInt32) -> Bool { p >= priorityBase && p - priorityBase < priorityCount }
    public func ownsTable(_ t: UInt32) -> Bool { t >= tableBase && t - tableBase < tableCount }

    /// The k-th mark value inside the mask (k from 1): the mask's lowest bit times k.
    public func mark(_ k: Int) -> UInt32 {
        let shift = UInt32(markMask.trailingZeroBitCount)
        return (UInt32(k) << shift) & markMask
    }
    /// How many interfaces the mask can tell apart.
    public var markValues: Int { markMask == 0 ? 0 : Int(markMask >> UInt32(markMask.trailingZeroBitCount)) }
}

/// A return-traffic policy: per interface its gateway, the services answered through it, the clients behind it.
public struct Policy: Sendable, Equatable {
    /// `servicesFrom: {interface: lo, prefixes: [192.168.1.0/24]}`.
    public struct ServicesFrom: Sendable, Equatable {
        public var interface: String
        public var prefixes: [IPPrefix]
        public init(interface: String, prefixes: [IPPrefix]) {
            self.interface = interface
            self.prefixes = prefixes
        }
        /// Whether an address found on `interface` is a service of the entry.
        public func covers(_ address: IPAddress) -> Bool { prefixes.contains { $0.contains(address) } }
    }

    public struct Interface: Sendable, Equatable {
        /// The gateway of `family`, if the entry has one.
        public func gateway(for family: AddressFamily) -> IPAddress? {
            if gateway.family == family { return gateway }
            return family == .inet6 ? gateway6 : nil
        }

        /// The families the entry has a gateway for, IPv4 first.
        public var families: [AddressFamily] { [AddressFamily.inet, .inet6].filter { gateway(for: $0) != nil } }

        public var name: String
        /// The router on this interface's network, of either family.
        public var gateway: IPAddress
        /// The IPv6 router when `gateway` is IPv4 (dual-stack); may be link-local (fe80::…), scoped to the interface.
        public var gateway6: IPAddress?
        public var services: [IPPrefix]
        public var clients: [IPPrefix]
        /// Services found at apply time: the global addresses on an interface inside some prefixes (MetalLB,
        /// kube-vip and BGP speakers add and remove LoadBalancer addresses at run time).
        public var servicesFrom: ServicesFrom?
        /// Where the entry came from, for error messages ("policy.yaml:12").
        public var origin: String?

        public init(name: String, gateway: IPAddress, gateway6: IPAddress? = nil, services: [IPPrefix] = [], clients: [IPPrefix] = [],
                    origin: String? = nil) {
            self.gateway6 = gateway6
            self.name = name
            self.gateway = gateway
            self.services = services
            self.clients = clients
            self.origin = origin
        }
    }

    public var name: String
    public var strategy: Strategy?
    public var interfaces: [Interface]
    /// Destinations that keep using the main table whatever the strategy (cluster and pod CIDRs).
    public var exempt: [IPPrefix]
    public var ownership: Ownership
    /// How ingress remembers a connection's interface.
    public var ingressTracking: IngressTracking = .conntrack

    /// `spec.ingress.tracking`.
    public enum IngressTracking: String, Sendable, Equatable, CaseIterable {
        /// The conntrack mark: TCP and UDP, local and forwarded (DNAT to pods). Every new connection pays for
        /// connection tracking.
        case conntrack
        /// The socket's mark: the request is marked on its way in and, with net.ipv4.tcp_fwmark_accept=1, the
        /// accepted socket takes the mark, so every reply carries it; net.ipv4.fwmark_reflect=1 does the same for
        /// the RSTs and ICMP the kernel sends itself. No connection tracking; local TCP only (not UDP, not DNAT).
        case socket
    }

    public init(name: String, strategy: Strategy? = nil, interfaces: [Interface], exempt: [IPPrefix] = [],
                ownership: Ownership = Ownership(), ingressTracking: IngressTracking = .conntrack) {
        self.ingressTracking = ingressTracking
        self.name = name
        self.strategy = strategy
        self.interfaces = interfaces
        self.exempt = exempt
        self.ownership = ownership
    }

    /// The strategy when neither the command line nor the policy names one: `source`, unless a service is announced
    /// through several interfaces (anycast, ECMP: one address behind two routers), where only `ingress` can tell
    /// the paths apart. The reason is returned for the user.
    public var defaultStrategy: (strategy: Strategy, reason: String?) {
        var seen: [IPPrefix: String] = [:]
        for entry in interfaces {
            for service in entry.services {
                if let other = seen[service], other != entry.name {
                    return (.ingress, "\(service) is announced through \(other) and \(entry.name): only ingress tells the paths apart")
                }
                seen[service] = entry.name
            }
        }
        return (.source, nil)
    }

    public static let apiVersion = "returnpath.dev/v1alpha1"
    public static let kind = "ReturnTrafficPolicy"
}

/// Reads policy files: Kubernetes-shaped YAML (apiVersion, kind, metadata, spec), every problem as FILE:LINE.
public enum PolicyFile {
    public static func load(path: String) throws(FileError) -> Policy {
        try parse(try YAMLReader.read(path), file: path)
    }

    public static func parse(_ text: String, file: String) throws(FileError) -> Policy {
        let reader = YAMLReader(file: file)
        let root = try reader.compose(text)
        let top = try reader.entries(root, "the policy", allowed: ["apiVersion", "kind", "metadata", "spec"])
        guard let apiNode = reader.value(top, "apiVersion"), try reader.string(apiNode, "apiVersion") == Policy.apiVersion else {
            throw reader.fail(reader.value(top, "apiVersion") ?? root, "apiVersion must be \(Policy.apiVersion)")
        }
        guard let kindNode = reader.value(top, "kind"), try reader.string(kindNode, "kind") == Policy.kind else {
            throw reader.fail(reader.value(top, "kind") ?? root, "kind must be \(Policy.kind)")
        }
        var name = "policy"
        if let metadata = reader.value(top, "metadata") {
            let fields = try reader.entries(metadata, "metadata", allowed: ["name", "labels", "annotations"])
            if let n = reader.value(fields, "name") { name = try reader.string(n, "metadata.name") }
        }
        guard let specNode = reader.value(top, "spec") else { throw reader.fail(root, "no spec") }
        let spec = try reader.entries(specNode, "spec", allowed: ["strategy", "interfaces", "exempt", "ownership", "ingress"])

        var strategy: Strategy?
        if let node = reader.value(spec, "strategy") {
            let text = try reader.string(node, "strategy")
            guard let parsed = Strategy(rawValue: text) else {
                throw reader.fail(node, "strategy \"\(text)\" is not one of static, source, mark, ingress")
            }
            strategy = parsed
        }
        var interfaces: [Policy.Interface] = []
        var interfaceNames = Set<String>()
        guard let interfacesNode = reader.value(spec, "interfaces") else { throw reader.fail(specNode, "spec has no interfaces") }
        for node in try reader.list(interfacesNode, "spec.interfaces") {
            let fields = try reader.entries(node, "an interface", allowed: ["name", "gateway", "gateway6", "services", "servicesFrom", "clients"])
            guard let nameNode = reader.value(fields, "name"), let gatewayNode = reader.value(fields, "gateway") else {
                throw reader.fail(node, "an interface needs name and gateway")
            }
            let ifName = try reader.string(nameNode, "interface name")
            if let problem = Link.validate(name: ifName) { throw reader.fail(nameNode, problem) }
            var entry = Policy.Interface(name: ifName, gateway: try reader.address(gatewayNode, "gateway of \(ifName)"),
                                         origin: node.mark.map { "\(file):\($0.line)" })
            if let node6 = reader.value(fields, "gateway6") {
                let gateway6 = try reader.address(node6, "gateway6 of \(ifName)")
                guard gateway6.family == .inet6 else { throw reader.fail(node6, "gateway6 of \(ifName) must be an IPv6 address") }
                guard entry.gateway.family == .inet else {
                    throw reader.fail(node6, "gateway of \(ifName) is already IPv6: give the IPv4 router as gateway and the IPv6 one as gateway6")
                }
                entry.gateway6 = gateway6
            }
            for key in ["services", "clients"] {
                guard let listNode = reader.value(fields, key) else { continue }
                // Per list, not per item: the lists hold up to 100,000 entries.
                let what = "\(key) of \(ifName)"
                let hasGateway = (inet: entry.gateway(for: .inet) != nil, inet6: entry.gateway(for: .inet6) != nil)
                let items = try reader.list(listNode, what)
                var prefixes: [IPPrefix] = []
                prefixes.reserveCapacity(items.count)
                for item in items {
                    let prefix = try reader.prefix(item, what)
                    guard prefix.isCanonical else {
                        throw reader.fail(item, "\(prefix.cidr) has host bits set (did you mean \(prefix.network.cidr)?)")
                    }
                    guard prefix.family == .inet6 ? hasGateway.inet6 : prefix.family == .inet ? hasGateway.inet : entry.gateway(for: prefix.family) != nil else {
                        let family = prefix.family == .inet6 ? "IPv6" : "IPv4"
                        throw reader.fail(item, "\(prefix.cidr) is \(family) but \(ifName) has no \(family) gateway (\(prefix.family == .inet6 ? "gateway6" : "gateway"): …)")
                    }
                    prefixes.append(prefix)
                }
                if key == "services" { entry.services = prefixes } else { entry.clients = prefixes }
            }
            if let fromNode = reader.value(fields, "servicesFrom") {
                let from = try reader.entries(fromNode, "servicesFrom of \(ifName)", allowed: ["interface", "prefixes"])
                guard let fromInterface = reader.value(from, "interface"), let prefixesNode = reader.value(from, "prefixes") else {
                    throw reader.fail(fromNode, "servicesFrom of \(ifName) needs interface and prefixes")
                }
                let source = try reader.string(fromInterface, "servicesFrom interface")
                if let problem = Link.validate(name: source) { throw reader.fail(fromInterface, problem) }
                var prefixes: [IPPrefix] = []
                for item in try reader.list(prefixesNode, "servicesFrom prefixes of \(ifName)") {
                    let prefix = try reader.prefix(item, "servicesFrom prefixes of \(ifName)")
                    guard prefix.isCanonical else { throw reader.fail(item, "\(prefix.cidr) has host bits set (did you mean \(prefix.network.cidr)?)") }
                    guard entry.gateway(for: prefix.family) != nil else {
                        throw reader.fail(item, "\(prefix.cidr): \(ifName) has no gateway of its family")
                    }
                    prefixes.append(prefix)
                }
                guard !prefixes.isEmpty else { throw reader.fail(prefixesNode, "servicesFrom of \(ifName) lists no prefixes") }
                entry.servicesFrom = Policy.ServicesFrom(interface: source, prefixes: prefixes)
            }
            if !interfaceNames.insert(ifName).inserted {
                throw reader.fail(nameNode, "interface \(ifName) is listed twice")
            }
            interfaces.append(entry)
        }
        var exempt: [IPPrefix] = []
        if let node = reader.value(spec, "exempt") {
            for item in try reader.list(node, "spec.exempt") {
                let prefix = try reader.prefix(item, "exempt prefix")
                guard prefix.isCanonical else { throw reader.fail(item, "\(prefix.cidr) has host bits set") }
                exempt.append(prefix)
            }
        }
        var ownership = Ownership()
        if let node = reader.value(spec, "ownership") {
            let fields = try reader.entries(node, "spec.ownership", allowed: [
                "priorityBase", "priorityCount", "tableBase", "tableCount", "protocol", "markMask", "allowKubeProxyMarks"])
            func number(_ key: String, _ range: ClosedRange<Int>) throws(FileError) -> Int? {
                guard let n = reader.value(fields, key) else { return nil }
                let text = try reader.string(n, key)
                let value = text.hasPrefix("0x") ? Int(text.dropFirst(2), radix: 16) : Int(text)
                guard let value, range.contains(value) else { throw reader.fail(n, "\(key) \"\(text)\" is not in \(range)") }
                return value
            }
            if let v = try number("priorityBase", 1...Int(UInt32.max)) { ownership.priorityBase = UInt32(v) }
            if let v = try number("priorityCount", 1...1_000_000) { ownership.priorityCount = UInt32(v) }
            if let v = try number("tableBase", 256...Int(UInt32.max)) { ownership.tableBase = UInt32(v) }
            if let v = try number("tableCount", 1...1_000_000) { ownership.tableCount = UInt32(v) }
            if let v = try number("protocol", 5...255) { ownership.proto = UInt8(v) }
            if let v = try number("markMask", 1...Int(UInt32.max)) { ownership.markMask = UInt32(v) }
            if let n = reader.value(fields, "allowKubeProxyMarks") {
                let text = try reader.string(n, "allowKubeProxyMarks")
                guard text == "true" || text == "false" else { throw reader.fail(n, "allowKubeProxyMarks is true or false") }
                ownership.allowKubeProxyMarks = text == "true"
            }
        }
        var tracking = Policy.IngressTracking.conntrack
        if let node = reader.value(spec, "ingress") {
            let fields = try reader.entries(node, "spec.ingress", allowed: ["tracking"])
            if let n = reader.value(fields, "tracking") {
                let text = try reader.string(n, "spec.ingress.tracking")
                guard let parsed = Policy.IngressTracking(rawValue: text) else {
                    throw reader.fail(n, "spec.ingress.tracking \"\(text)\" is not one of conntrack, socket")
                }
                tracking = parsed
            }
        }
        return Policy(name: name, strategy: strategy, interfaces: interfaces, exempt: exempt, ownership: ownership,
                      ingressTracking: tracking)
    }
}
