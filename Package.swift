// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "returnpath",
    products: [
        .executable(name: "returnpath", targets: ["returnpath"]),
        .library(name: "Netlink", targets: ["Netlink"]),
        .library(name: "Namespace", targets: ["Namespace"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // Kernel headers and the few libc calls Swift's Glibc module does not expose.
        .target(name: "CLinux"),
        // What the commands print, without Foundation (whose String(format:), padding and JSONSerialization linked
        // all of Foundation and ICU into the binary): printf-style numbers, columns, JSON text, standard error.
        .target(name: "TextFormat", dependencies: ["Namespace"]),
        // Network namespaces (ip-netns compatible), the namespace thread, sysctls, the one errno path (syscall),
        // spawning and supervising processes.
        .target(
            name: "Namespace",
            dependencies: [
                "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // rtnetlink and nfnetlink: socket, message encoding, typed operations; IP addresses and socket addresses.
        .target(
            name: "Netlink",
            dependencies: [
                "CLinux", "Namespace",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The handle to one namespace, made once per command and passed down: its rtnetlink and nfnetlink sockets and
        // its libnftables context (the one wrapper of libnftables, from the system: libnftables-dev).
        .target(
            name: "Handle",
            dependencies: ["CNftables", "Namespace", "Netlink", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // libyaml, from the system (libyaml-dev).
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // Reading YAML documents (topologies, policies): every problem is FILE:LINE, and hostile input (deep nesting,
        // alias bombs, huge files) is refused, never a crash or a hang.
        .target(
            name: "YAMLFile",
            dependencies: [
                "CYAML", "Namespace", "Netlink",
            ]
        ),
        // Labs: topology files, building them in namespaces, their services, DNAT rules (libnftables) and state.
        // The built-in topologies are docs/*.yaml, embedded at build time (Sources/Lab/Topologies/ links to them).
        .target(
            name: "Lab",
            dependencies: [
                "CLinux", "Handle", "Netlink", "Namespace", "TextFormat", "YAMLFile",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            resources: [
                .embedInCode("Topologies/seed.yaml"), .embedInCode("Topologies/anycast.yaml"),
                .embedInCode("Topologies/seed-k8s.yaml"), .embedInCode("Topologies/seed-dualstack.yaml"),
                .embedInCode("Topologies/cluster.yaml"), .embedInCode("Topologies/policy-cluster.yaml"),
            ]
        ),
        // libpcap, from the system (libpcap-dev).
        .systemLibrary(name: "CPcap", providers: [.apt(["libpcap-dev"])]),
        // Probe: real connections between namespaces (or, passive, connections others make), with packet evidence
        // of where SYNs came in and replies went out. Takes namespaces and flows; the CLI resolves labs.
        .target(
            name: "Probe",
            dependencies: [
                "CPcap", "CLinux", "Netlink", "Namespace", "TextFormat",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // libnftables, from the system (libnftables-dev).
        .systemLibrary(name: "CNftables", providers: [.apt(["libnftables-dev"])]),
        // ReturnRouting: policies, plans per strategy, and apply/remove of owned rules, routes, nftables and sysctls.
        .target(
            name: "ReturnRouting",
            dependencies: [
                "Handle", "Netlink", "Namespace", "TextFormat", "YAMLFile",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Where a lab and a policy meet: the policy a lab topology implies for one of its hosts.
        .target(name: "LabPolicy", dependencies: ["Lab", "Netlink", "ReturnRouting"]),
        // Benchmarks: the engines behind `returnpath bench …` (each measured against the obvious alternative).
        .target(
            name: "Benchmarks",
            dependencies: ["CLinux", "Handle", "Netlink", "Namespace", "Lab", "ReturnRouting", "TextFormat"]
        ),
        // The agent: keeps a namespace equal to the policy (events, debounced reconciles, periodic resync, policy
        // file watch), with metrics and health endpoints.
        .target(
            name: "Agent",
            dependencies: [
                "CLinux", "Netlink", "Namespace", "ReturnRouting", "TextFormat", "YAMLFile",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Doctor: reads a node (rules, routes, nftables, sysctls, the record of the last apply), explains one packet's
        // routing decision step by step, checks it against the kernel's, and finds what breaks return paths.
        .target(
            name: "Doctor",
            dependencies: [
                "CLinux", "Handle", "Netlink", "Namespace", "ReturnRouting", "TextFormat", "YAMLFile",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "returnpath",
            dependencies: [
                "Agent", "CLinux", "Netlink", "Namespace", "Lab", "LabPolicy", "Probe", "ReturnRouting", "Benchmarks", "Doctor",
                "TextFormat",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink"]),
        .testTarget(name: "FeatureTests", dependencies: ["Agent", "Lab", "LabPolicy", "Netlink", "Probe", "ReturnRouting", "TextFormat", "YAMLFile", "Doctor"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Agent", "Benchmarks", "Netlink", "Namespace", "Lab", "Probe", "ReturnRouting", "Doctor",
                .product(name: "SystemPackage", package: "swift-system"),
                "YAMLFile",
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
