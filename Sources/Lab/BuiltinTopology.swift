/// Topologies built in beside the seed, for `returnpath demo --topology` and `--family`: the same texts as
/// docs/anycast.yaml, docs/seed-k8s.yaml and docs/seed-dualstack.yaml (a test keeps them equal), so the demo runs
/// wherever the binary is.
public enum BuiltinTopology: String, CaseIterable, Sendable {
    /// docs/seed.yaml
    case seed
    /// docs/anycast.yaml: one service behind two routers.
    case anycast
    /// docs/seed-k8s.yaml: the seed behind kube-proxy, services DNATed to pods.
    case k8s
    /// docs/seed-dualstack.yaml: the seed with IPv6 beside IPv4.
    case dualstack

    public var docsFile: String {
        switch self {
        case .seed: return "docs/seed.yaml"
        case .anycast: return "docs/anycast.yaml"
        case .k8s: return "docs/seed-k8s.yaml"
        case .dualstack: return "docs/seed-dualstack.yaml"
        }
    }

    public var fileName: String { self == .seed ? Seed.fileName : "built-in \(rawValue)" }

    public var yaml: String {
        switch self {
        case .seed: return Seed.yaml
        case .anycast: return Self.anycastYAML
        case .k8s: return Self.k8sYAML
        case .dualstack: return Self.dualstackYAML
        }
    }

    public func topology() throws(TopologyError) -> Topology { try TopologyFile.parse(yaml, file: fileName) }

    static let anycastYAML = """
        # One LoadBalancer IP behind two routers (anycast / ECMP, as BGP announces it): the node has its default network
        # (eth0) and two secondary networks, each to its own router; each router has its own client network. Both routers
        # route 172.16.9.9 to the node, so requests for the same address arrive on eth1 (from router1) and on eth2 (from
        # router2). The source address cannot tell them apart: only "reply by the interface the request came in on" works.
        name: anycast
        networks:
          primary:   {subnet: 10.111.220.0/24}   # the default network
          network1:  {subnet: 10.111.221.0/24}   # node eth1 — router1
          network2:  {subnet: 10.111.222.0/24}   # node eth2 — router2
          external1: {subnet: 10.111.223.0/24}   # router1 — client1
          external2: {subnet: 10.111.224.0/24}   # router2 — client2
        hosts:
          node:
            interfaces:
              eth0: {network: primary, address: 10.111.220.11}
              eth1: {network: network1, address: 10.111.221.11}
              eth2: {network: network2, address: 10.111.222.11}
              lo: {addresses: [172.16.9.9/32]}
            routes:
              - {to: default, via: 10.111.220.1}
            services:
              - {address: 172.16.9.9, port: 3000, reply: anycast}
          gateway:
            # The default network's gateway: no route back to the client networks, so replies sent there are lost.
            interfaces:
              eth0: {network: primary, address: 10.111.220.1}
          router1:
            sysctls: {net.ipv4.ip_forward: 1}
            interfaces:
              eth1: {network: network1, address: 10.111.221.21}
              eth2: {network: external1, address: 10.111.223.21}
            routes:
              - {to: 172.16.9.9, via: 10.111.221.11}
          router2:
            sysctls: {net.ipv4.ip_forward: 1}
            interfaces:
              eth1: {network: network2, address: 10.111.222.22}
              eth2: {network: external2, address: 10.111.224.22}
            routes:
              - {to: 172.16.9.9, via: 10.111.222.11}
          client1:
            role: client
            interfaces:
              eth0: {network: external1, address: 10.111.223.23}
            routes:
              - {to: 172.16.9.9, via: 10.111.223.21}
          client2:
            role: client
            interfaces:
              eth0: {network: external2, address: 10.111.224.23}
            routes:
              - {to: 172.16.9.9, via: 10.111.224.22}

        """

    static let k8sYAML = """
        # The seed behind kube-proxy: the LoadBalancer IPs svc1/svc2 on the node's lo are DNATed (kube-proxy's shape) to two
        # pods behind the node, pod1 and pod2, so the pods answer on port 3000; port 3001 of svc1 goes to node2, another node
        # of the cluster on the default network (externalTrafficPolicy: Cluster, masqueraded, so node2 answers through the
        # node). The node keeps services of its own on port 8080. Before a fix every client flow is asymmetric: the replies
        # are forwarded by the node, de-NATed, and routed by destination only, out eth0 to the default gateway.
        name: seed-k8s
        networks:
          primary:   {subnet: 10.111.220.0/24}   # the default network
          network1:  {subnet: 10.111.221.0/24}
          network2:  {subnet: 10.111.222.0/24}
          external0: {subnet: 10.111.223.0/24}
          external1: {subnet: 10.111.224.0/24}
          pods0:     {subnet: 10.244.0.0/24}     # node — pod1
          pods1:     {subnet: 10.244.1.0/24}     # node — pod2
        hosts:
          node:
            interfaces:
              eth0: {network: primary, address: 10.111.220.11}
              eth1: {network: network1, address: 10.111.221.11}
              eth2: {network: network2, address: 10.111.222.11}
              veth-pod1: {network: pods0, address: 10.244.0.1}
              veth-pod2: {network: pods1, address: 10.244.1.1}
              lo: {addresses: [192.168.1.1/32, 192.168.2.1/32]}
            routes:
              - {to: default, via: 10.111.220.1}
            services:                  # answered by the node itself
              - {address: 192.168.1.1, port: 8080, reply: svc1}
              - {address: 192.168.2.1, port: 8080, reply: svc2}
            dnat:                      # kube-proxy's rules: the pods answer (the node forwards: ip_forward is set for it)
              - {service: 192.168.1.1:3000, backend: 10.244.0.10:3000}
              - {service: 192.168.2.1:3000, backend: 10.244.1.10:3000}
              - {service: 192.168.1.1:3001, backend: 10.111.220.12:3000, masquerade: true}
          gateway:
            # Stands for the default network's gateway: it has no route back to the external networks,
            # so replies sent there are lost.
            interfaces:
              eth0: {network: primary, address: 10.111.220.1}
          node2:
            # Another node of the cluster: it answers svc1's port 3001 (to the node's address, which masquerading gave the
            # connection).
            interfaces:
              eth0: {network: primary, address: 10.111.220.12}
            routes:
              - {to: default, via: 10.111.220.1}
            services:
              - {address: 10.111.220.12, port: 3000, reply: node2}
          router:
            sysctls: {net.ipv4.ip_forward: 1}
            interfaces:
              eth1: {network: network1, address: 10.111.221.21}
              eth2: {network: network2, address: 10.111.222.21}
              eth3: {network: external0, address: 10.111.223.21}
              eth4: {network: external1, address: 10.111.224.21}
            routes:
              - {to: 192.168.1.1, via: 10.111.221.11}
              - {to: 192.168.2.1, via: 10.111.222.11}
          client1:
            role: client
            interfaces:
              eth0: {network: external0, address: 10.111.223.23}
            routes:
              - {to: 192.168.1.1, via: 10.111.223.21}
          client2:
            role: client
            interfaces:
              eth0: {network: external1, address: 10.111.224.23}
            routes:
              - {to: 192.168.2.1, via: 10.111.224.21}
          pod1:
            interfaces:
              eth0: {network: pods0, address: 10.244.0.10}
            routes:
              - {to: default, via: 10.244.0.1}
            services:
              - {address: 10.244.0.10, port: 3000, reply: pod1}
          pod2:
            interfaces:
              eth0: {network: pods1, address: 10.244.1.10}
            routes:
              - {to: default, via: 10.244.1.1}
            services:
              - {address: 10.244.1.10, port: 3000, reply: pod2}

        """

    static let dualstackYAML = """
        # The seed, dual-stack: beside each IPv4 network an IPv6 one (ULA prefixes), both services also on IPv6 addresses
        # on lo, the router routing both families. Before a fix both families are asymmetric: IPv6 replies also follow the
        # main table's default route out of eth0.
        name: seed-dualstack
        networks:
          primary:   {subnet: 10.111.220.0/24, subnet6: "fd00:220::/64"}   # the default network
          network1:  {subnet: 10.111.221.0/24, subnet6: "fd00:221::/64"}
          network2:  {subnet: 10.111.222.0/24, subnet6: "fd00:222::/64"}
          external0: {subnet: 10.111.223.0/24, subnet6: "fd00:223::/64"}
          external1: {subnet: 10.111.224.0/24, subnet6: "fd00:224::/64"}
        hosts:
          node:
            interfaces:
              eth0: {network: primary, addresses: [10.111.220.11, "fd00:220::11"]}
              eth1: {network: network1, addresses: [10.111.221.11, "fd00:221::11"]}
              eth2: {network: network2, addresses: [10.111.222.11, "fd00:222::11"]}
              lo: {addresses: [192.168.1.1/32, 192.168.2.1/32, "fd00:1::1/128", "fd00:2::1/128"]}
            routes:
              - {to: default, via: 10.111.220.1}
              - {to: "::/0", via: "fd00:220::1"}
            services:
              - {address: 192.168.1.1, port: 3000, reply: svc1}
              - {address: 192.168.2.1, port: 3000, reply: svc2}
              - {address: "fd00:1::1", port: 3000, reply: svc1}
              - {address: "fd00:2::1", port: 3000, reply: svc2}
          gateway:
            # Stands for the default network's gateway: it has no route back to the external networks,
            # so replies sent there are lost.
            interfaces:
              eth0: {network: primary, addresses: [10.111.220.1, "fd00:220::1"]}
          router:
            sysctls: {net.ipv4.ip_forward: 1, net.ipv6.conf.all.forwarding: 1}
            interfaces:
              eth1: {network: network1, addresses: [10.111.221.21, "fd00:221::21"]}
              eth2: {network: network2, addresses: [10.111.222.21, "fd00:222::21"]}
              eth3: {network: external0, addresses: [10.111.223.21, "fd00:223::21"]}
              eth4: {network: external1, addresses: [10.111.224.21, "fd00:224::21"]}
            routes:
              - {to: 192.168.1.1, via: 10.111.221.11}
              - {to: 192.168.2.1, via: 10.111.222.11}
              - {to: "fd00:1::1", via: "fd00:221::11"}
              - {to: "fd00:2::1", via: "fd00:222::11"}
          client1:
            role: client
            interfaces:
              eth0: {network: external0, addresses: [10.111.223.23, "fd00:223::23"]}
            routes:
              - {to: 192.168.1.1, via: 10.111.223.21}
              - {to: "fd00:1::1", via: "fd00:223::21"}
          client2:
            role: client
            interfaces:
              eth0: {network: external1, addresses: [10.111.224.23, "fd00:224::23"]}
            routes:
              - {to: 192.168.2.1, via: 10.111.224.21}
              - {to: "fd00:2::1", via: "fd00:224::21"}

        """
}
