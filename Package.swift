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
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // Kernel headers and the few libc calls Swift's Glibc module does not expose.
        .target(name: "CLinux"),
        // Network namespaces (ip-netns compatible), the namespace thread, sysctls.
        .target(
            name: "Namespace",
            dependencies: [
                "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // rtnetlink: socket, message encoding, typed operations.
        .target(
            name: "Netlink",
            dependencies: [
                "CLinux", "Namespace",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Labs: topology files, building them in namespaces, their services, DNAT rules (libnftables) and state.
        .target(
            name: "Lab",
            dependencies: [
                "CLinux", "CNftables", "Netlink", "Namespace",
                .product(name: "Yams", package: "Yams"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // libpcap, from the system (libpcap-dev).
        .systemLibrary(name: "CPcap", providers: [.apt(["libpcap-dev"])]),
        // Probe: real connections between namespaces (or, passive, connections others make), with packet evidence
        // of where SYNs came in and replies went out. Takes namespaces and flows; the CLI resolves labs.
        .target(
            name: "Probe",
            dependencies: [
                "CPcap", "CLinux", "Netlink", "Namespace",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // libnftables, from the system (libnftables-dev).
        .systemLibrary(name: "CNftables", providers: [.apt(["libnftables-dev"])]),
        // ReturnRouting: policies, plans per strategy, and apply/remove of owned rules, routes, nftables and sysctls.
        .target(
            name: "ReturnRouting",
            dependencies: [
                "CNftables", "Netlink", "Namespace", "Lab",
                .product(name: "Yams", package: "Yams"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Doctor: reads a node (rules, routes, nftables, sysctls, the record of the last apply), explains one packet's
        // routing decision step by step, checks it against the kernel's, and finds what breaks return paths.
        .target(
            name: "Doctor",
            dependencies: [
                "CLinux", "CNftables", "Netlink", "Namespace", "ReturnRouting",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "returnpath",
            dependencies: [
                "CLinux", "Netlink", "Namespace", "Lab", "Probe", "ReturnRouting", "Doctor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink"]),
        .testTarget(name: "FeatureTests", dependencies: ["Lab", "Netlink", "Probe", "ReturnRouting", "Doctor"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Netlink", "Namespace", "Lab", "Probe", "ReturnRouting", "Doctor",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
