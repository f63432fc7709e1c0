/// The seed proof-of-concept's topology (the README's picture; docs/lab.md shows it built): the default lab.
/// docs/seed.yaml is the same file, embedded at build time, so users can copy and change it.
public enum Seed {
    public static let fileName = "built-in seed"

    /// docs/seed.yaml, embedded in the binary at build time (Sources/Lab/Topologies/seed.yaml links to it).
    public static let yaml = String(decoding: PackageResources.seed_yaml, as: UTF8.self)

    /// The parsed seed topology. It is validated by the tests; a failure here is a bug in this file.
    public static func topology() throws(TopologyError) -> Topology {
        try TopologyFile.parse(yaml, file: fileName)
    }
}
