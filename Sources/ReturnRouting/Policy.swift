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

        /// Every router of `family` (`gateways: [A, B]`): the gateway first, then the others, in the policy's order.
        public func routers(for family: AddressFamily) -> [IPAddress] {
            guard let first = gateway(for: family) else { return [] }
            return [first] + alternateGateways.filter { $0.family == family }
        }

        /// Every router of the entry, IPv4 first.
        public var routers: [IPAddress] { families.flatMap(routers(for:)) }

        /// The entry without the routers in `skip` (routers that stopped answering): per family the others, or all
        /// of them when none is left (nothing better to send to).
        public func skipping(_ skip: Set<IPAddress>) -> Interface {
            var copy = self
            let kept = families.flatMap { family -> [IPAddress] in
                let all = routers(for: family), alive = all.filter { !skip.contains($0) }
                return alive.isEmpty ? all : alive
            }
            let v4 = kept.filter { $0.family == .inet }, v6 = kept.filter { $0.family == .inet6 }
            guard let primary = v4.first ?? v6.first else { return self }
            copy.gateway = primary
            copy.gateway6 = primary.family == .inet ? v6.first : nil
            copy.alternateGateways = Array(v4.dropFirst()) + Array(v6.dropFirst())
            return copy
        }

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
        /// Routers beyond `gateway` and `gateway6` (`gateways: [A, B]`): the interface's routes are multipath.
        public var alternateGateways: [IPAddress] = []
        /// The gateways are used on-link, whether or not the interface has an address on their subnet.
        public var onlink = false

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
