/// The seed proof-of-concept's topology (the README's picture; docs/lab.md shows it built): the default lab.
/// docs/seed.yaml is the same text, so users can copy and change it (a test keeps the two equal).
public enum Seed {
    public static let fileName = "built-in seed"

    public static let yaml = """
        # The seed proof-of-concept: a Kubernetes node with a default network (eth0) and two secondary networks
        # (eth1, eth2) behind a router, two LoadBalancer service IPs on lo, and two external clients.
        name: seed
        networks:
          primary:   {subnet: 10.111.220.0/24}   # the default network
          network1:  {subnet: 10.111.221.0/24}
          network2:  {subnet: 10.111.222.0/24}
          external0: {subnet: 10.111.223.0/24}
          external1: {subnet: 10.111.224.0/24}
        hosts:
          node:
            interfaces:
              eth0: {network: primary, address: 10.111.220.11}
              eth1: {network: network1, address: 10.111.221.11}
              eth2: {network: network2, address: 10.111.222.11}
              lo: {addresses: [192.168.1.1/32, 192.168.2.1/32]}
            routes:
              - {to: default, via: 10.111.220.1}
            services:
              - {address: 192.168.1.1, port: 3000, reply: svc1}
              - {address: 192.168.2.1, port: 3000, reply: svc2}
          gateway:
            # Stands for the default network's gateway: it has no route back to the external networks,
            # so replies sent there are lost.
            interfaces:
              eth0: {network: primary, address: 10.111.220.1}
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

        """

    /// The parsed seed topology. It is validated by the tests; a failure here is a bug in this file.
    public static func topology() throws(TopologyError) -> Topology {
        try TopologyFile.parse(yaml, file: fileName)
    }
}
