/// Topologies built in beside the seed, for `returnpath demo --topology` and `--family`: docs/anycast.yaml,
/// docs/seed-k8s.yaml and docs/seed-dualstack.yaml, embedded in the binary at build time (Sources/Lab/Topologies/
/// links to them), so the demo runs wherever the binary is.
public enum BuiltinTopology: String, CaseIterable, Sendable {
    /// docs/seed.yaml
    case seed
    /// docs/anycast.yaml: one service behind two routers.
    case anycast
    /// docs/seed-k8s.yaml: the seed behind kube-proxy, services DNATed to pods.
    case k8s
    /// docs/seed-dualstack.yaml: the seed with IPv6 beside IPv4.
    case dualstack
    /// docs/cluster.yaml: a leaf-spine cluster of two racks, two ToRs each, four nodes (its policy:
    /// docs/policy-cluster.yaml, `clusterPolicy`).
    case cluster

    public var docsFile: String {
        switch self {
        case .seed: return "docs/seed.yaml"
        case .anycast: return "docs/anycast.yaml"
        case .k8s: return "docs/seed-k8s.yaml"
        case .dualstack: return "docs/seed-dualstack.yaml"
        case .cluster: return "docs/cluster.yaml"
        }
    }

    public var fileName: String { self == .seed ? Seed.fileName : "built-in \(rawValue)" }

    public var yaml: String {
        switch self {
        case .seed: return Seed.yaml
        case .anycast: return String(decoding: PackageResources.anycast_yaml, as: UTF8.self)
        case .k8s: return String(decoding: PackageResources.seed_k8s_yaml, as: UTF8.self)
        case .dualstack: return String(decoding: PackageResources.seed_dualstack_yaml, as: UTF8.self)
        case .cluster: return String(decoding: PackageResources.cluster_yaml, as: UTF8.self)
        }
    }

    /// docs/policy-cluster.yaml: the cluster lab's one policy, as its ConfigMap would hold it.
    public static var clusterPolicy: String { String(decoding: PackageResources.policy_cluster_yaml, as: UTF8.self) }

    public func topology() throws(TopologyError) -> Topology { try TopologyFile.parse(yaml, file: fileName) }
}
